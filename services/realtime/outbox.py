"""realtime outbox: settings changes and shutdowns as versioned contracts (pure functions)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.shared.contracts import OutgoingMessage
from services.shared.outbox import RelaySpec

from .application import RealtimeApplication
from .domain import ProjectRealtime


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def config_message(e: Any) -> OutgoingMessage | None:
    meta = getattr(e, "meta", None) or {}
    common = {"correlation_id": meta.get("correlation_id"), "causation_id": meta.get("causation_id")}
    if isinstance(e, ProjectRealtime.Changed):
        return OutgoingMessage("realtime_config_changed", 1, {
            "ref": e.ref, "changes": dict(e.changes), "previous": dict(e.previous), "version": e.originator_version,
            "changed_by": meta.get("actor"), "at": _at(e.at_ms)}, project_ref=e.ref, **common)
    if isinstance(e, ProjectRealtime.ShutdownRequested):
        return OutgoingMessage("realtime_shutdown_requested", 1, {
            "ref": e.ref, "seq": e.seq, "requested_by": meta.get("actor"), "at": _at(e.at_ms)},
            project_ref=e.ref, **common)
    return None


def to_message(e: Any) -> OutgoingMessage | None:
    return config_message(e)


RELAY = RelaySpec(producer="realtime", application=RealtimeApplication, to_message=to_message)
