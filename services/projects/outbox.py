"""projects outbox: lifecycle requests for the provisioner and status changes for
integrators, as versioned contracts (pure functions)."""

from __future__ import annotations

from typing import Any

from services.shared.contracts import OutgoingMessage
from services.shared.outbox import RelaySpec

from .application import ProjectsApplication
from .domain import Project

REQUESTS = {"pause": "project_pause_requested", "restore": "project_restore_requested",
            "delete": "project_deletion_requested"}


def to_message(e: Any) -> OutgoingMessage | None:
    meta = getattr(e, "meta", None) or {}
    common = {"correlation_id": meta.get("correlation_id"), "causation_id": meta.get("causation_id")}
    if isinstance(e, Project.Requested):
        return OutgoingMessage("project_requested", 1, {"ref": e.ref, "org_slug": e.org_slug, "name": e.name,
                                                        "region": e.region, "operation_id": e.operation_id},
                               org_id=e.org_slug, project_ref=e.ref, **common)
    if isinstance(e, Project.OperationStarted):
        return OutgoingMessage(REQUESTS[e.operation], 1, {"ref": e.ref, "operation_id": e.operation_id},
                               project_ref=e.ref, **common)
    if isinstance(e, (Project.OperationCompleted, Project.OperationFailed)):
        # v2 since the outcome events carry their progress; stored v1 events arrive here
        # upcast (progress None). Consumers of v1 read it through the contract's adapter.
        failed = isinstance(e, Project.OperationFailed)
        total = e.total_steps
        return OutgoingMessage("project_status_changed", 2, {
            "ref": e.ref, "org_slug": e.org_slug, "status": e.status, "reason": e.reason if failed else None,
            "step": e.step if failed else None,
            "step_index": e.step_index if failed else total, "total_steps": total,
        }, org_id=e.org_slug, project_ref=e.ref)
    return None


RELAY = RelaySpec(producer="projects", application=ProjectsApplication, to_message=to_message)
