"""provisioner outbox: which saga events are public, as which contract (pure functions).

Every saga event carries the saga's identity in its meta (see application.meta_for), so
each maps alone: StepStarted -> provisioning_step_started; Succeeded -> the operation's
outcome (project_provisioned / _paused / _restored / _removed); Failed -> provisioning_failed.
Attempts, resumptions and completions stay inside the service.
"""

from __future__ import annotations

from typing import Any

from services.shared.contracts import OutgoingMessage
from services.shared.outbox import RelaySpec

from .application import ProvisionerApplication
from .domain import Saga

OUTCOMES = {"create": "project_provisioned", "pause": "project_paused", "restore": "project_restored",
            "delete": "project_removed"}


def to_message(e: Any) -> OutgoingMessage | None:
    if not isinstance(e, (Saga.StepStarted, Saga.Succeeded, Saga.Failed)):
        return None
    meta = e.meta
    ref, operation, operation_id = meta["ref"], meta["operation"], meta["operation_id"]

    def msg(event_type: str, payload: dict[str, Any]) -> OutgoingMessage:
        return OutgoingMessage(event_type, 1, {"ref": ref, "operation_id": operation_id, **payload},
                               org_id=meta.get("org_slug"), project_ref=ref,
                               correlation_id=meta.get("correlation_id"), causation_id=meta.get("causation_id"))

    if isinstance(e, Saga.StepStarted):
        return msg("provisioning_step_started", {"operation": operation, "step": e.step, "step_index": e.index,
                                                 "total_steps": e.total})
    if isinstance(e, Saga.Failed):
        return msg("provisioning_failed", {"operation": operation, "step": e.step, "reason": e.reason})
    outcome = e.outcome
    if operation in ("create", "restore"):
        return msg(OUTCOMES[operation], {"connection": outcome["connection"]})
    if operation == "pause":
        return msg("project_paused", {"backup_bytes": outcome.get("backup_bytes", 0)})
    return msg("project_removed", {})


RELAY = RelaySpec(producer="provisioner", application=ProvisionerApplication, to_message=to_message)
