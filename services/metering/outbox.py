"""metering outbox: which domain events are public, as which contract (pure functions)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.shared.contracts import OutgoingMessage
from services.shared.outbox import RelaySpec

from .application import MeteringApplication
from .domain import UsageAlert


def to_message(e: Any) -> OutgoingMessage | None:
    if isinstance(e, UsageAlert.Triggered):
        payload = {
            "alert_id": str(e.originator_id), "org_slug": e.org_slug, "project_ref": e.project_ref,
            "kind": e.kind, "metric": e.metric, "threshold_percent": e.threshold_percent, "limit": e.limit,
            "quantity": e.quantity, "period_start": _utc(e.period_start), "period_end": _utc(e.period_end),
        }
        return OutgoingMessage("usage_alert_triggered", 1, payload, org_id=e.org_slug, project_ref=e.project_ref)
    return None


def _utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


RELAY = RelaySpec(producer="metering", application=MeteringApplication, to_message=to_message)
