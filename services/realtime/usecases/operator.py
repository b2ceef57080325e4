"""The operators' view of realtime, per project: live channels, connected clients, presence
and Postgres changes subscriptions (the realtime server's own stats), and the project's
replication slots with their lag (pg_replication_slots of the tenants' cluster, which on the
local driver is the platform's own). Platform admins only.

Mixed into RealtimeApplication. Ports passed per call: `orgs` (require_admin), `server` (the
realtime server's stats, services/realtime/adapters.py).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

REF = re.compile(r"^[a-z]{20}$")
SLOTS = (
    "SELECT slot_name, database, plugin, active, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes "
    "FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY database, slot_name"
)


class AdminPort(Protocol):
    def require_admin(self, user_id: str) -> dict[str, Any]: ...


class ServerStatsPort(Protocol):
    def stats(self) -> dict[str, dict[str, Any]]: ...


class OperatorViews:
    recorder: Any

    def operator_view(self, actor_id: str, orgs: AdminPort, server: ServerStatsPort) -> dict[str, Any]:
        """Every project the realtime server holds or that has a replication slot."""
        orgs.require_admin(actor_id)
        try:
            live, server_error = server.stats(), None
        except Exception as exc:  # the view still shows the slots when the server is down
            live, server_error = {}, f"the realtime server did not answer ({type(exc).__name__})"
        slots: dict[str, list[dict[str, Any]]] = {}
        other: list[dict[str, Any]] = []
        for row in self.replication_slots():
            (slots.setdefault(row["database"], []) if REF.match(row["database"] or "") else other).append(row)
        projects = []
        for ref in sorted(set(live) | set(slots)):
            s = live.get(ref) or {}
            projects.append({
                "ref": ref, "clients": s.get("clients", 0), "users": s.get("users", 0),
                "channels": s.get("channels", 0), "joined_channels": s.get("joined_channels", 0),
                "topics": s.get("topics", []), "presence": s.get("presence", {}),
                "subscriptions": s.get("subscriptions", 0), "peak_clients": s.get("peak_clients", 0),
                "slots": slots.get(ref, []),
                "slot_lag_bytes": max((x["lag_bytes"] or 0 for x in slots.get(ref, [])), default=None),
            })
        return {"projects": projects, "server_error": server_error, "other_slots": other}

    def replication_slots(self) -> list[dict[str, Any]]:
        with self.recorder.datastore.get_connection() as conn:
            rows = conn.execute(SLOTS).fetchall()
        return [dict(r) for r in rows]
