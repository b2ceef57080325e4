"""The functions runtime: runs edge functions in Deno workers (see server.py)."""
