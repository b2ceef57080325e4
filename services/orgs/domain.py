"""orgs domain: User, AccessToken, Organization aggregates. Imports eventsourcing.domain only.

Ids are uuid5 of the natural key (email, token hash, slug), so uniqueness is enforced by
the event store itself: a second create of the same key fails to save.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("0b3c6a52-53c7-4a8e-9f0e-2d6b1c7a9e11")
ROLES = ("owner", "admin", "member")


class User(Aggregate):
    @staticmethod
    def create_id(email: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "user:" + email.lower())

    @event("Registered")
    def __init__(self, email: str, password_hash: str, meta: dict[str, Any]) -> None:
        self.email = email.lower()
        self.password_hash = password_hash
        self.organizations: list[str] = []

    @event("JoinedOrganization")
    def join(self, org_slug: str, role: str, meta: dict[str, Any]) -> None:
        if org_slug not in self.organizations:
            self.organizations.append(org_slug)


class AccessToken(Aggregate):
    @staticmethod
    def create_id(token_hash: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "token:" + token_hash)

    @event("Issued")
    def __init__(self, token_hash: str, user_id: str, name: str, prefix: str, meta: dict[str, Any]) -> None:
        self.token_hash = token_hash
        self.user_id = user_id
        self.name = name
        self.prefix = prefix
        self.revoked = False

    @event("Revoked")
    def revoke(self, meta: dict[str, Any]) -> None:
        self.revoked = True


class Organization(Aggregate):
    @staticmethod
    def create_id(slug: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "org:" + slug)

    @event("Created")
    def __init__(self, slug: str, name: str, owner_user_id: str, meta: dict[str, Any]) -> None:
        self.slug = slug
        self.name = name
        self.members: dict[str, str] = {owner_user_id: "owner"}

    def role_of(self, user_id: str) -> str | None:
        return self.members.get(user_id)
