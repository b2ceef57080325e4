"""The realtime server (Supabase Realtime's Phoenix channels for every project): `python -m
services.realtime.server`. See server.py and docs/realtime.md."""
