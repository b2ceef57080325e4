"""realtime service."""
