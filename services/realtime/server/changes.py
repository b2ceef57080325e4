"""The realtime server's hook for Postgres changes: what a channel asked for in its phx_join
(`config.postgres_changes`), handed to a `ChangesProvider`, which answers with the entries of
the join's reply and later pushes each change through `Subscriber.deliver`.

The server (server.py) owns the channel; the provider (the CDC engine in `cdc/`) owns the
WAL, the filters and the RLS check of each change under the subscriber's role and claims.
`NoChanges` is the provider while no CDC engine is wired: a join without postgres_changes is
answered with an empty list, one with them is refused with a clear reason.

Standard library only (the provider may import what it needs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from services.shared.tenants import Tenant


class ChangesRefused(Exception):
    """The postgres_changes asked for cannot be served; the message goes to the client as the
    phx_reply's `response.reason` (as Supabase Realtime answers a bad subscription)."""


@dataclass(eq=False)
class Subscriber:
    """One joined channel that asked for Postgres changes.

    `role` and `claims` are the channel's current JWT's (the apikey's until the client sends
    its own); the server updates both when an `access_token` message refreshes the token, and
    a provider must read them at delivery time, not copy them at subscribe time.
    `postgres_changes` is the join's list as the client sent it, e.g.
    `[{"event": "INSERT", "schema": "public", "table": "todos", "filter": "id=eq.1"}]`.
    """

    ref: str
    tenant: Tenant
    topic: str  # "realtime:<name>"
    postgres_changes: list[dict[str, Any]]
    role: str
    claims: dict[str, Any]
    _push: Callable[[dict[str, Any]], Awaitable[None]] = field(repr=False)
    ids: list[int] = field(default_factory=list)  # the ids the provider gave, in the join's order

    @property
    def jwt_secret(self) -> str:
        return self.tenant.jwt_secret

    def conninfo(self, user: str = "owner") -> str:
        """libpq conninfo of the project's database (as its owner by default; the provider
        switches to the subscriber's role per check, with `request.jwt.claims` set)."""
        return self.tenant.conninfo(user)

    async def deliver(self, payload: dict[str, Any]) -> None:
        """Push one `postgres_changes` event to this channel: `payload` is
        `{"ids": [<subscription ids it matched>], "data": {...Supabase's change shape...}}`.
        Goes through the project's fair queue and counts as a realtime message; a channel
        that has left drops it."""
        await self._push(payload)


class ChangesProvider(Protocol):
    async def subscribe(self, sub: Subscriber) -> list[dict[str, Any]]:
        """Start delivering changes for `sub`; returns the phx_reply's
        `response.postgres_changes`, one entry per asked change, in order:
        `[{"id": int, "event": ..., "schema": ..., "table": ..., "filter": ...}]`.
        Raises ChangesRefused (its message is sent to the client) when it cannot."""
        ...

    async def unsubscribe(self, sub: Subscriber) -> None:
        """The channel left, closed, or its socket went away. Idempotent."""
        ...

    async def close(self) -> None:
        """The server stops."""
        ...


class NoChanges:
    """No CDC engine: postgres_changes are refused with a reason, everything else works."""

    async def subscribe(self, sub: Subscriber) -> list[dict[str, Any]]:
        if sub.postgres_changes:
            raise ChangesRefused("Postgres changes are not available on this server yet")
        return []

    async def unsubscribe(self, sub: Subscriber) -> None:
        return None

    async def close(self) -> None:
        return None
