"""Who a bearer token or a session belongs to, remembered for a short time.

Authenticating asks orgs over RPC (the token's and the user's aggregates); on a read that is
most of the request's cost. The gateway keeps each answer for `gateway_auth_cache_ttl_s`
seconds, keyed by the SHA-256 of the token (never the token itself) or by the session's
user id; and, with the same rules, each caller's organization list (`orgs_key`). Entries go sooner when the user's identity or access changes:

- at once, in the gateway process that handled the change (revoking a token, disabling a
  user, membership and organization changes): `drop_user` / `clear`;
- in every gateway process, from orgs' contract events (`token_revoked`,
  `user_access_changed`, `user_admin_changed`, `member_*`, `ownership_transferred`,
  `organization_updated`, `organization_deleted`), which each gateway receives on its own broadcast queue
  (gateway/service.py): a token revoked anywhere is refused within about a second.

Imports the standard library only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any, Callable


def token_key(token: str) -> str:
    return "t:" + hashlib.sha256(token.encode()).hexdigest()


def user_key(user_id: str) -> str:
    return "u:" + user_id


def orgs_key(user_id: str) -> str:
    """The caller's organization list (GET /v1/organizations), kept like an identity."""
    return "o:" + user_id


class AuthCache:
    def __init__(self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] <= self.clock():
                del self._entries[key]
                return None
            return hit[1]

    def put(self, key: str, user: dict[str, Any]) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl, user)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop_user(self, user_id: str) -> None:
        with self._lock:
            for key in [k for k, (_, u) in self._entries.items() if u.get("id") == user_id]:
                del self._entries[key]

    def drop_org(self, slug: str) -> None:
        with self._lock:
            for key in [k for k, (_, u) in self._entries.items() if slug in (u.get("organizations") or ())]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def on_event(self, envelope: dict[str, Any]) -> None:
        """Apply one of orgs' contract events (see the module doc)."""
        payload = envelope.get("payload") or {}
        for field in ("user_id", "from_user_id", "to_user_id"):
            if isinstance(payload.get(field), str):
                self.drop_user(payload[field])
        if envelope.get("event_type") in ("organization_deleted", "organization_updated") \
                and isinstance(payload.get("slug"), str):
            self.drop_org(payload["slug"])
