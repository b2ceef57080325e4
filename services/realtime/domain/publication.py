"""A project's Postgres changes configuration as an aggregate: which tables are in the
tenant's `supabase_realtime` publication, which actions it publishes, which tables have
`REPLICA IDENTITY FULL`. The tenant's database is where it takes effect (the realtime service
applies it there first); each applied change is recorded here as an event naming who changed
what, from and to.

Imports eventsourcing.domain and the standard library only.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("0f6a3c52-71d4-4b8e-a1f0-6c2e9d5b7a13")
ACTIONS = ("insert", "update", "delete", "truncate")
Meta = dict[str, Any]


class ProjectPublication(Aggregate):
    """One per project. `tables`: "schema.table" -> {"replica_identity_full": bool} for the
    published tables; `actions`: action -> bool, as last applied."""

    @staticmethod
    def create_id(ref: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"publication:{ref}")

    @event("Started")
    def __init__(self, ref: str, org_slug: str) -> None:
        self.ref = ref
        self.org_slug = org_slug
        self.tables: dict[str, dict[str, Any]] = {}
        self.actions: dict[str, bool] = {a: True for a in ACTIONS}
        self.updated_at_ms: int | None = None

    def record(self, *, added: list[str], removed: list[str], identity: dict[str, list[bool]],
               actions: dict[str, list[bool]], published: dict[str, bool], at_ms: int, meta: Meta) -> bool:
        """Record what was applied to the tenant's database (from/to); `published` is the
        resulting map of published table -> replica identity full. False: nothing changed."""
        if not (added or removed or identity or actions):
            return False
        self._changed(ref=self.ref, added=sorted(added), removed=sorted(removed), identity=dict(identity),
                      actions=dict(actions), published=dict(published), at_ms=at_ms, meta=meta)
        return True

    @event("Changed")
    def _changed(self, ref: str, added: list[str], removed: list[str], identity: dict[str, list[bool]],
                 actions: dict[str, list[bool]], published: dict[str, bool], at_ms: int, meta: Meta) -> None:
        self.tables = {name: {"replica_identity_full": bool(full)} for name, full in published.items()}
        for action, (_before, after) in actions.items():
            self.actions[action] = bool(after)
        self.updated_at_ms = at_ms
