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

    def org_msg(event_type: str, payload: dict[str, Any]) -> OutgoingMessage:
        slug = payload["slug"]
        return OutgoingMessage(event_type, 1, payload, org_id=slug, **common)

    if isinstance(e, User.Registered):
        return OutgoingMessage("user_signed_up", 1, {"user_id": str(e.originator_id), "email": e.email}, **common)
    if isinstance(e, User.PromotedToAdmin):
        return OutgoingMessage("user_admin_changed", 1, {"user_id": str(e.originator_id), "is_admin": True}, **common)
    if isinstance(e, User.DemotedFromAdmin):
        return OutgoingMessage("user_admin_changed", 1, {"user_id": str(e.originator_id), "is_admin": False}, **common)
    if isinstance(e, User.Disabled):
        return OutgoingMessage("user_access_changed", 1, {"user_id": str(e.originator_id), "disabled": True}, **common)
    if isinstance(e, User.Enabled):
        return OutgoingMessage("user_access_changed", 1, {"user_id": str(e.originator_id), "disabled": False}, **common)
    if isinstance(e, User.TokenRemoved):
        return OutgoingMessage("token_revoked", 1, {"user_id": str(e.originator_id), "token_id": e.token_id}, **common)
    if not isinstance(e, Organization.Event):
        return None
    # Only Created carries the slug as a field; the application records it in the meta of
    # every later organization event (OrgsApplication._org_meta), so this stays a pure mapping.
    if isinstance(e, Organization.Created):
        return org_msg("organization_created", {"slug": e.slug, "name": e.name, "owner_user_id": e.owner_user_id})
    slug = meta.get("org_slug")
    if slug is None:
        return None
    if isinstance(e, Organization.Renamed):
        return org_msg("organization_updated", {"slug": slug, "changes": {"name": e.name}})
    if isinstance(e, Organization.SettingsChanged):
        return org_msg("organization_updated", {"slug": slug, "changes": dict(e.changes)})
    if isinstance(e, Organization.Deleted):
        return org_msg("organization_deleted", {"slug": slug})
    if isinstance(e, Organization.InvitationAccepted) or isinstance(e, Organization.MemberAdded):
        return org_msg("member_added", {"slug": slug, "user_id": e.user_id, "role": e.role})
    if isinstance(e, Organization.RoleChanged):
        return org_msg("member_role_changed", {"slug": slug, "user_id": e.user_id, "role": e.role})
    if isinstance(e, Organization.OwnershipTransferred):
        return org_msg("ownership_transferred", {"slug": slug, "from_user_id": e.from_user, "to_user_id": e.to_user})
    if isinstance(e, Organization.MemberRemoved):
        return org_msg("member_removed", {"slug": slug, "user_id": e.user_id, "reason": e.reason})
    return None


RELAY = RelaySpec(producer="orgs", application=OrgsApplication, to_message=to_message)
