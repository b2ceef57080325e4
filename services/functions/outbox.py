"""functions outbox: deploys, deletions and invocation records as versioned contracts
(pure functions)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.shared.contracts import OutgoingMessage
from services.shared.outbox import RelaySpec

from .application import FunctionsApplication
from .domain import Function, InvocationBatch


def to_message(e: Any) -> OutgoingMessage | None:
    meta = getattr(e, "meta", None) or {}
    common = {"correlation_id": meta.get("correlation_id"), "causation_id": meta.get("causation_id")}
    if isinstance(e, Function.VersionDeployed):
        return OutgoingMessage("function_deployed", 1, {"ref": e.ref, "slug": e.slug, "version": e.version,
                                                        "active": e.active, "bundle_sha256": e.bundle_sha256,
                                                        "size_bytes": e.size_bytes},
                               project_ref=e.ref, **common)
    if isinstance(e, Function.Deleted):
        return OutgoingMessage("function_deleted", 1, {"ref": e.ref, "slug": e.slug}, project_ref=e.ref, **common)
    if isinstance(e, InvocationBatch.Invoked):
        at = datetime.fromtimestamp(e.at_ms / 1000, timezone.utc)
        return OutgoingMessage("function_invoked", 1, {"slug": e.slug, "version": e.version, "status": e.status,
                                                       "duration_ms": e.duration_ms, "request_id": e.request_id,
                                                       "at": at},
                               org_id=e.org_slug, project_ref=e.ref, correlation_id=e.request_id,
                               causation_id=e.request_id)
    return None


RELAY = RelaySpec(producer="functions", application=FunctionsApplication, to_message=to_message)
