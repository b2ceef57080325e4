"""A project's realtime settings as an aggregate: every change is an event naming who changed
what (from and to), and every shutdown (disconnect all of the project's clients) is one too.

Imports eventsourcing.domain and the standard library only. The settings' names, defaults
and bounds are services/realtime/config.py's (passed in as plain dicts: the domain stays pure).
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("5d0f3b1e-8a4c-4c1f-9e62-3b7a2d9c0e41")
Meta = dict[str, Any]


class RuleViolation(Exception):
    pass


class ProjectRealtime(Aggregate):
    """One per project: the settings in force (every field, defaults filled in) and how many
    shutdowns were asked for (the server disconnects the project's clients once per
    shutdown it has not acted on yet)."""

    @staticmethod
    def create_id(ref: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"realtime:{ref}")

    @event("Started")
    def __init__(self, ref: str, org_slug: str, settings: dict[str, Any]) -> None:
        self.ref = ref
        self.org_slug = org_slug
        self.settings = dict(settings)
        self.shutdowns = 0
        self.updated_at_ms: int | None = None

    def change(self, changes: dict[str, Any], at_ms: int, meta: Meta) -> dict[str, Any]:
        """Apply what differs from the settings in force; returns {field: [from, to]} (empty:
        nothing to record)."""
        unknown = set(changes) - set(self.settings)
        if unknown:
            raise RuleViolation(f"unknown realtime settings: {', '.join(sorted(unknown))}")
        diff = {k: v for k, v in changes.items() if self.settings[k] != v}
        if not diff:
            return {}
        previous = {k: self.settings[k] for k in diff}
        self._changed(ref=self.ref, changes=diff, previous=previous, at_ms=at_ms, meta=meta)
        return {k: [previous[k], diff[k]] for k in diff}

    @event("Changed")
    def _changed(self, ref: str, changes: dict[str, Any], previous: dict[str, Any], at_ms: int, meta: Meta) -> None:
        self.settings.update(changes)
        self.updated_at_ms = at_ms

    def shutdown(self, at_ms: int, meta: Meta) -> int:
        self._shutdown_requested(ref=self.ref, seq=self.shutdowns + 1, at_ms=at_ms, meta=meta)
        return self.shutdowns

    @event("ShutdownRequested")
    def _shutdown_requested(self, ref: str, seq: int, at_ms: int, meta: Meta) -> None:
        self.shutdowns = seq
