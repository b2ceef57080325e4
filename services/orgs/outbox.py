"""orgs outbox: which domain events are public, as which contract (pure functions)."""

from __future__ import annotations

from typing import Any

from services.shared.contracts import OutgoingMessage
from services.shared.outbox import RelaySpec

from .application import OrgsApplication
from .domain import Organization, User


def to_message(e: Any) -> OutgoingMessage | None:
    meta = getattr(e, "meta", None) or {}
    common = {"correlation_id": meta.get("correlation_id"), "causation_id": meta.get("causation_id")}
    if isinstance(e, Organization.Created):
        return OutgoingMessage(
            "organization_created", 1,
            {"slug": e.slug, "name": e.name, "owner_user_id": e.owner_user_id},
            org_id=e.slug, **common,
        )
    if isinstance(e, User.Registered):
        return OutgoingMessage("user_signed_up", 1, {"user_id": str(e.originator_id), "email": e.email}, **common)
    return None


RELAY = RelaySpec(producer="orgs", application=OrgsApplication, to_message=to_message)
