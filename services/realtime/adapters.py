"""Supabase Realtime's tenants API, for projects on the kubernetes driver (where the real
Supabase Realtime serves `/realtime/v1`): a project's settings changes and shutdowns reach its
tenant there. The provisioner registers the tenant (services/provisioner/drivers/dataplane.py);
this adapter only updates it. Imports requests and PyJWT."""

from __future__ import annotations

import time
from typing import Any, Protocol

import jwt
import requests

# Settings Supabase Realtime keeps on its tenant, by the same names (connection_pool and
# presence_enabled have no tenant field there: the tenant's extension settings and the
# client's presence config decide those).
TENANT_FIELDS = ("max_concurrent_users", "max_events_per_second", "max_bytes_per_second", "max_channels_per_client",
                 "max_joins_per_second", "max_presence_events_per_second", "max_payload_size_in_kb", "private_only",
                 "suspend")


class RealtimeRuntimeError(Exception):
    pass


class RealtimeRuntime(Protocol):
    """Where a project's realtime settings take effect besides our own server's feed."""

    def update_tenant(self, ref: str, changes: dict[str, Any]) -> bool: ...

    def shutdown_tenant(self, ref: str) -> bool: ...


class SupabaseRealtimeTenants:
    """`PUT /api/tenants/<ref>` with the changed tenant fields, `POST /api/tenants/<ref>/shutdown`
    (every socket of the tenant closed), each with a short-lived HS256 bearer token signed with
    Realtime's API_JWT_SECRET. Both are idempotent (absolute values; a second shutdown of
    a tenant with no sockets does nothing). A tenant not registered (yet) is not an error."""

    def __init__(self, base: str, secret: str, session: requests.Session | None = None, timeout: float = 10.0):
        self.base = base.rstrip("/")
        self.secret = secret
        self.http = session or requests.Session()
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> int:
        now = int(time.time())
        token = jwt.encode({"iat": now, "exp": now + 300, "role": "supaplatform"}, self.secret or "unset",
                           algorithm="HS256")
        try:
            r = self.http.request(method, self.base + path, json=body, timeout=self.timeout,
                                  headers={"Authorization": f"Bearer {token}"})
        except requests.RequestException as exc:
            raise RealtimeRuntimeError(f"Realtime: could not reach {self.base} ({type(exc).__name__})") from None
        if r.status_code not in (200, 201, 204, 404):
            raise RealtimeRuntimeError(f"Realtime: {method} {path} answered {r.status_code}: {r.text[:200]}")
        return r.status_code

    def update_tenant(self, ref: str, changes: dict[str, Any]) -> bool:
        fields = {k: v for k, v in changes.items() if k in TENANT_FIELDS}
        if not fields:
            return False
        return self._call("PUT", f"/api/tenants/{ref}", {"tenant": fields}) != 404

    def shutdown_tenant(self, ref: str) -> bool:
        return self._call("POST", f"/api/tenants/{ref}/shutdown") != 404


class RealtimeServerStats:
    """The realtime server's operator stats (`GET /internal/stats` on loopback, with the
    platform's internal bearer token; tenant code cannot make that token)."""

    def __init__(self, base: str, token: str, timeout: float = 5.0):
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def stats(self) -> dict[str, dict[str, Any]]:
        r = requests.get(f"{self.base}/internal/stats", headers={"Authorization": f"Bearer {self.token}"},
                         timeout=self.timeout)
        r.raise_for_status()
        return dict(r.json().get("projects") or {})


class NoRuntime:
    """The local driver: our own server hears changes through its feed; nothing else to tell."""

    def update_tenant(self, ref: str, changes: dict[str, Any]) -> bool:
        return False

    def shutdown_tenant(self, ref: str) -> bool:
        return False
