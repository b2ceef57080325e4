"""provisioner: provisioning sagas (create, pause, restore, delete) and the drivers that
build tenant infrastructure."""
