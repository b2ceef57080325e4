"""The bounds of a project's integer realtime settings, as the public Management API spec has
them (UpdateRealtimeConfigBody): one table for the gateway, which validates requests, and the
realtime service, which checks them again with the plan's ceilings. Pure."""

from __future__ import annotations

# Each integer setting's bounds, from the public spec (UpdateRealtimeConfigBody).
BOUNDS: dict[str, tuple[int, int]] = {
    "connection_pool": (1, 100),
    "max_concurrent_users": (1, 50000),
    "max_events_per_second": (1, 50000),
    "max_bytes_per_second": (1, 10000000),
    "max_channels_per_client": (1, 10000),
    "max_joins_per_second": (1, 5000),
    "max_presence_events_per_second": (1, 5000),
    "max_payload_size_in_kb": (1, 10000),
}
