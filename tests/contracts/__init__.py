"""Contract tests: exported docs, golden samples, producers' output, consumers' acceptance."""
