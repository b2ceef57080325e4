"""realtime use cases, one module per part (config: settings and shutdowns)."""
