"""The gateway: HTTP in front of the services. Owns no business rules."""
