"""The realtime server (Supabase Realtime's Phoenix channels for every project, behind the
project edge) and what feeds it: `python -m services.realtime.server`. See server.py and
docs/realtime.md."""
