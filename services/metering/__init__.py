"""metering service."""
