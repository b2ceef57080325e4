"""provisioner service."""
