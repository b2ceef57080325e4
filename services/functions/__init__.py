"""functions service."""
