"""orgs domain: users, email claims, access tokens, organizations (members, invitations).

Imports eventsourcing.domain and the standard library only. Rules live in plain methods
that check, then trigger a private `@event` method whose body only changes state (it runs
again on every rebuild, so it must never check or do I/O).

Ids: an EmailAddress is uuid5(email) and an AccessToken uuid5(token hash), so the event
store itself refuses a second claim of the same key; Organization ids are uuid5(slug).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("0b3c6a52-53c7-4a8e-9f0e-2d6b1c7a9e11")
ROLES = ("owner", "admin", "member", "read_only")
Meta = dict[str, Any]


class RuleViolation(Exception):
    """A command would break an invariant; the message says which, for the user."""


class User(Aggregate):
    # Accounts registered before email verification existed replay with the defaults: they
    # sign in as before but have no verified address (they confirm it from their profile).
    @event("Registered")
    def __init__(self, email: str, password_hash: str, display_name: str, meta: Meta,
                 email_verified: bool = False, pending: bool = False) -> None:
        self.email = email
        self.password_hash = password_hash
        self.display_name = display_name
        self.organizations: list[str] = []
        self.current_org: str | None = None
        self.token_ids: list[str] = []
        self.is_admin = False
        self.disabled = False
        self.email_verified = email_verified
        # A sign-up nobody has confirmed from the mailbox yet: no sign-in until it is.
        self.pending = pending
        # The one outstanding verification link: {"token_hash", "email", "expires_at",
        # "password_hash"} (the password of the sign-up that asked for it, or None).
        self.verification: dict[str, Any] | None = None

    @event("VerificationRequested")
    def request_verification(self, token_hash: str, email: str, expires_at: datetime,
                             password_hash: str | None, display_name: str | None, meta: Meta) -> None:
        self.verification = {"token_hash": token_hash, "email": email, "expires_at": expires_at,
                             "password_hash": password_hash, "display_name": display_name}

    def verify_email(self, meta: Meta) -> None:
        v = self.verification
        if v is None or v["email"] != self.email:
            raise RuleViolation("no verification is outstanding for this address")
        self._email_verified(email=self.email, meta=meta)

    @event("EmailVerified")
    def _email_verified(self, email: str, meta: Meta) -> None:
        v = self.verification or {}
        if v.get("password_hash"):
            self.password_hash = v["password_hash"]
        if v.get("display_name") is not None:
            self.display_name = v["display_name"]
        self.email_verified = True
        self.pending = False
        self.verification = None

    @event("ProfileUpdated")
    def update_profile(self, display_name: str, meta: Meta) -> None:
        self.display_name = display_name

    @event("EmailChanged")
    def change_email(self, email: str, meta: Meta) -> None:
        self.email = email
        self.email_verified = False  # the new address is confirmed by its own link
        self.verification = None

    @event("PasswordChanged")
    def change_password(self, password_hash: str, meta: Meta) -> None:
        self.password_hash = password_hash

    @event("JoinedOrganization")
    def join(self, org_slug: str, role: str, meta: Meta) -> None:
        if org_slug not in self.organizations:
            self.organizations.append(org_slug)
        if self.current_org is None:
            self.current_org = org_slug

    @event("LeftOrganization")
    def left(self, org_slug: str, meta: Meta) -> None:
        if org_slug in self.organizations:
            self.organizations.remove(org_slug)
        if self.current_org == org_slug:
            self.current_org = self.organizations[0] if self.organizations else None

    def select_organization(self, org_slug: str, meta: Meta) -> None:
        if org_slug not in self.organizations:
            raise RuleViolation(f"not a member of organization {org_slug}")
        self._selected(org_slug=org_slug, meta=meta)

    @event("CurrentOrganizationSelected")
    def _selected(self, org_slug: str, meta: Meta) -> None:
        self.current_org = org_slug

    # -- platform administration (operators and platform admins, not organization roles) ----
    def set_admin(self, is_admin: bool, meta: Meta) -> bool:
        """Grant or take away the platform admin flag; False when it already was so."""
        if self.is_admin == is_admin:
            return False
        if is_admin:
            self._promoted_to_admin(meta=meta)
        else:
            self._demoted_from_admin(meta=meta)
        return True

    @event("PromotedToAdmin")
    def _promoted_to_admin(self, meta: Meta) -> None:
        self.is_admin = True

    @event("DemotedFromAdmin")
    def _demoted_from_admin(self, meta: Meta) -> None:
        self.is_admin = False

    def set_disabled(self, disabled: bool, meta: Meta) -> bool:
        """Disable (no sign-in, tokens and sessions refused) or enable; False when no change."""
        if self.disabled == disabled:
            return False
        if disabled:
            self._disabled(meta=meta)
        else:
            self._enabled(meta=meta)
        return True

    @event("Disabled")
    def _disabled(self, meta: Meta) -> None:
        self.disabled = True

    @event("Enabled")
    def _enabled(self, meta: Meta) -> None:
        self.disabled = False

    @event("TokenAdded")
    def add_token(self, token_id: str, meta: Meta) -> None:
        self.token_ids.append(token_id)

    @event("TokenRemoved")
    def remove_token(self, token_id: str, meta: Meta) -> None:
        if token_id in self.token_ids:
            self.token_ids.remove(token_id)


class EmailAddress(Aggregate):
    """Who holds an email address: makes addresses unique across users."""

    @staticmethod
    def create_id(email: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "email:" + email.lower())

    @event("Claimed")
    def __init__(self, email: str, user_id: str, meta: Meta) -> None:
        self.email = email
        self.user_id: str | None = user_id

    def claim(self, user_id: str, meta: Meta) -> None:
        if self.user_id is not None and self.user_id != user_id:
            raise RuleViolation(f"email {self.email} is already in use")
        self._reclaimed(user_id=user_id, meta=meta)

    @event("Reclaimed")
    def _reclaimed(self, user_id: str, meta: Meta) -> None:
        self.user_id = user_id

    @event("Released")
    def release(self, meta: Meta) -> None:
        self.user_id = None


class AccessToken(Aggregate):
    @staticmethod
    def create_id(token_hash: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "token:" + token_hash)

    @event("Issued")
    def __init__(self, token_hash: str, user_id: str, name: str, prefix: str, meta: Meta,
                 expires_at: str | None = None) -> None:
        self.token_hash = token_hash
        self.user_id = user_id
        self.name = name
        self.prefix = prefix
        self.expires_at = expires_at  # ISO 8601, or None: until revoked
        self.revoked = False

    @event("Revoked")
    def revoke(self, meta: Meta) -> None:
        self.revoked = True


class InvitationPointer(Aggregate):
    """Maps an invitation id (the public part of its token) to its organization."""

    @event("Created")
    def __init__(self, org_slug: str, meta: Meta) -> None:
        self.org_slug = org_slug


class Organization(Aggregate):
    @staticmethod
    def create_id(slug: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "org:" + slug)

    @event("Created")
    def __init__(self, slug: str, name: str, owner_user_id: str, meta: Meta) -> None:
        self.slug = slug
        self.name = name
        self.billing_email: str | None = None
        self.default_region: str | None = None
        self.members: dict[str, str] = {owner_user_id: "owner"}
        self.invitations: dict[str, dict[str, Any]] = {}
        self.deleted = False

    # -- queries -------------------------------------------------------------------------------
    def role_of(self, user_id: str) -> str | None:
        return None if self.deleted else self.members.get(user_id)

    def owners(self) -> list[str]:
        return [u for u, r in self.members.items() if r == "owner"]

    def pending_invitation_for(self, email: str) -> str | None:
        for inv_id, inv in self.invitations.items():
            if inv["email"] == email and inv["status"] == "pending":
                return inv_id
        return None

    # -- settings ------------------------------------------------------------------------------
    @event("Renamed")
    def rename(self, name: str, meta: Meta) -> None:
        self.name = name

    @event("SettingsChanged")
    def change_settings(self, changes: dict[str, Any], meta: Meta) -> None:
        for key, value in changes.items():
            setattr(self, key, value)

    def delete(self, meta: Meta) -> None:
        if self.deleted:
            raise RuleViolation("organization already deleted")
        self._deleted(meta=meta)

    @event("Deleted")
    def _deleted(self, meta: Meta) -> None:
        self.deleted = True

    # -- members -------------------------------------------------------------------------------
    def add_member(self, user_id: str, role: str, meta: Meta) -> None:
        _check_role(role)
        if user_id in self.members:
            raise RuleViolation("already a member of this organization")
        self._member_added(user_id=user_id, role=role, meta=meta)

    @event("MemberAdded")
    def _member_added(self, user_id: str, role: str, meta: Meta) -> None:
        self.members[user_id] = role

    def change_role(self, user_id: str, role: str, meta: Meta) -> None:
        _check_role(role)
        current = self._require_member(user_id)
        if current == role:
            return
        if current == "owner" and len(self.owners()) == 1:
            raise RuleViolation("an organization must keep at least one owner; transfer ownership first")
        self._role_changed(user_id=user_id, role=role, meta=meta)

    @event("RoleChanged")
    def _role_changed(self, user_id: str, role: str, meta: Meta) -> None:
        self.members[user_id] = role

    def remove_member(self, user_id: str, reason: str, meta: Meta) -> None:
        current = self._require_member(user_id)
        if current == "owner" and len(self.owners()) == 1:
            raise RuleViolation("the last owner cannot leave or be removed; transfer ownership first")
        self._member_removed(user_id=user_id, reason=reason, meta=meta)

    @event("MemberRemoved")
    def _member_removed(self, user_id: str, reason: str, meta: Meta) -> None:
        del self.members[user_id]

    def transfer_ownership(self, from_user: str, to_user: str, meta: Meta) -> None:
        if self.members.get(from_user) != "owner":
            raise RuleViolation("only an owner can transfer ownership")
        self._require_member(to_user)
        if from_user == to_user:
            raise RuleViolation("you already own this organization")
        self._ownership_transferred(from_user=from_user, to_user=to_user, meta=meta)

    @event("OwnershipTransferred")
    def _ownership_transferred(self, from_user: str, to_user: str, meta: Meta) -> None:
        self.members[to_user] = "owner"
        self.members[from_user] = "admin"

    def _require_member(self, user_id: str) -> str:
        role = self.members.get(user_id)
        if role is None:
            raise RuleViolation("no such member in this organization")
        return role

    # -- invitations ---------------------------------------------------------------------------
    def invite(self, invitation_id: str, email: str, role: str, secret_hash: str, expires_at: datetime,
               member_emails: set[str], meta: Meta) -> None:
        _check_role(role)
        if email in member_emails:
            raise RuleViolation(f"{email} is already a member of this organization")
        if self.pending_invitation_for(email):
            raise RuleViolation(f"{email} already has a pending invitation; resend it instead")
        self._invited(invitation_id=invitation_id, email=email, role=role, secret_hash=secret_hash,
                      expires_at=expires_at, meta=meta)

    @event("InvitationCreated")
    def _invited(self, invitation_id: str, email: str, role: str, secret_hash: str, expires_at: datetime,
                 meta: Meta) -> None:
        self.invitations[invitation_id] = {
            "email": email, "role": role, "secret_hash": secret_hash, "expires_at": expires_at,
            "status": "pending",
        }

    def resend_invitation(self, invitation_id: str, secret_hash: str, expires_at: datetime, meta: Meta) -> None:
        inv = self._invitation(invitation_id)
        if inv["status"] != "pending":
            raise RuleViolation(f"invitation is {inv['status']}; it cannot be resent")
        self._invitation_resent(invitation_id=invitation_id, secret_hash=secret_hash, expires_at=expires_at,
                                meta=meta)

    @event("InvitationResent")
    def _invitation_resent(self, invitation_id: str, secret_hash: str, expires_at: datetime, meta: Meta) -> None:
        self.invitations[invitation_id].update(secret_hash=secret_hash, expires_at=expires_at)

    def revoke_invitation(self, invitation_id: str, meta: Meta) -> None:
        inv = self._invitation(invitation_id)
        if inv["status"] != "pending":
            raise RuleViolation(f"invitation is already {inv['status']}")
        self._invitation_revoked(invitation_id=invitation_id, meta=meta)

    @event("InvitationRevoked")
    def _invitation_revoked(self, invitation_id: str, meta: Meta) -> None:
        self.invitations[invitation_id]["status"] = "revoked"

    def accept_invitation(self, invitation_id: str, user_id: str, meta: Meta) -> None:
        inv = self._invitation(invitation_id)
        if inv["status"] != "pending":
            raise RuleViolation(f"invitation is {inv['status']}")
        if user_id in self.members:
            raise RuleViolation("already a member of this organization")
        self._invitation_accepted(invitation_id=invitation_id, user_id=user_id, role=inv["role"], meta=meta)

    @event("InvitationAccepted")
    def _invitation_accepted(self, invitation_id: str, user_id: str, role: str, meta: Meta) -> None:
        self.invitations[invitation_id]["status"] = "accepted"
        self.members[user_id] = role

    def _invitation(self, invitation_id: str) -> dict[str, Any]:
        inv = self.invitations.get(invitation_id)
        if inv is None:
            raise RuleViolation("no such invitation")
        return inv


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise RuleViolation(f"role must be one of {', '.join(ROLES)}")
