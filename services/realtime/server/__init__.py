"""The realtime server (the Phoenix protocol behind the project edge) and what feeds it."""
