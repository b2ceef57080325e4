"""projects service."""
