"""Postgres changes for the realtime server: each tenant's WAL decoded from a temporary
logical replication slot (pgoutput, filtered by the tenant's `supabase_realtime`
publication), matched to the subscribers' `postgres_changes` bindings, checked against each
subscriber's RLS and sent in Supabase's payload shape. See docs/realtime-changes.md."""
