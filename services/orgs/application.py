"""orgs application: one method per command, one save each; returns plain data.

Imports the domain, eventsourcing and shared errors; no framework.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import uuid
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from services.shared.errors import Conflict, InvalidInput, NotFound, Unauthorized

from .domain import AccessToken, Organization, User

TOKEN_RE = re.compile(r"^sbp_[0-9a-f]{40}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(got.hex(), digest)


def token_hash(token: str) -> str:
    # Tokens carry 160 random bits, so a fast hash is enough to make the stored form useless.
    return hashlib.sha256(token.encode()).hexdigest()


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "org"


def meta_of(ctx: dict[str, Any] | None) -> dict[str, Any]:
    ctx = ctx or {}
    return {k: ctx.get(k) for k in ("actor", "correlation_id", "causation_id")}


class OrgsApplication(Application):
    name = "orgs"

    # -- users and tokens ------------------------------------------------------------------
    def register_user(self, email: str, password: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        email = (email or "").strip().lower()
        if not EMAIL_RE.match(email) or len(email) > 254:
            raise InvalidInput("email: not a valid email address")
        if len(password or "") < 8:
            raise InvalidInput("password: must be at least 8 characters")
        user = User(email=email, password_hash=hash_password(password), meta=meta_of(ctx))
        try:
            self.save(user)
        except IntegrityError:
            raise Conflict(f"a user with email {email} already exists") from None
        return self._user_view(user)

    def issue_token(self, email: str, name: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        user = self._user_by_email(email)
        token = "sbp_" + secrets.token_hex(20)
        h = token_hash(token)
        at = AccessToken(token_hash=h, user_id=str(user.id), name=name or "token", prefix=token[:8], meta=meta_of(ctx))
        self.save(at)
        return {"token": token, "id": str(at.id), "name": at.name, "prefix": at.prefix,
                "created_at": at.created_on.isoformat()}

    def authenticate_token(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise Unauthorized("invalid access token")
        try:
            at: AccessToken = self.repository.get(AccessToken.create_id(token_hash(token)))
        except AggregateNotFoundError:
            raise Unauthorized("invalid access token") from None
        if at.revoked:
            raise Unauthorized("access token revoked")
        return self._user_view(self._user(at.user_id))

    # -- organizations ---------------------------------------------------------------------
    def create_organization(self, user_id: str, name: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        name = (name or "").strip()
        if not name:
            raise InvalidInput("name: must not be empty")
        if len(name) > 256:
            raise InvalidInput("name: at most 256 characters")
        user = self._user(user_id)
        base = slugify(name)
        meta = meta_of(ctx)
        for attempt in range(8):
            slug = base if attempt == 0 else f"{base}-{_random_suffix()}"
            org = Organization(slug=slug, name=name, owner_user_id=str(user.id), meta=meta)
            user.join(org_slug=slug, role="owner", meta=meta)
            try:
                self.save(org, user)
                return self._org_view(org)
            except IntegrityError:
                user = self._user(user_id)  # drop the unsaved join, try another slug
        raise Conflict("could not find a free slug for that name; choose another name")

    def get_organization(self, user_id: str, slug: str) -> dict[str, Any]:
        org = self._org(slug)
        if org.role_of(user_id) is None:
            # Same answer as "does not exist": non-members learn nothing.
            raise NotFound(f"organization {slug} not found")
        return self._org_view(org)

    def list_organizations(self, user_id: str) -> list[dict[str, Any]]:
        user = self._user(user_id)
        return [self._org_view(self._org(s)) for s in user.organizations]

    # -- helpers ---------------------------------------------------------------------------
    def _user(self, user_id: str) -> User:
        try:
            return self.repository.get(_uuid(user_id))
        except (AggregateNotFoundError, ValueError):
            raise NotFound("user not found") from None

    def _user_by_email(self, email: str) -> User:
        try:
            return self.repository.get(User.create_id(email=(email or "").strip()))
        except AggregateNotFoundError:
            raise NotFound(f"no user with email {email}") from None

    def _org(self, slug: str) -> Organization:
        try:
            return self.repository.get(Organization.create_id(slug=slug))
        except AggregateNotFoundError:
            raise NotFound(f"organization {slug} not found") from None

    @staticmethod
    def _user_view(user: User) -> dict[str, Any]:
        return {"id": str(user.id), "email": user.email}

    @staticmethod
    def _org_view(org: Organization) -> dict[str, Any]:
        return {"id": org.slug, "slug": org.slug, "name": org.name,
                "created_at": org.created_on.isoformat()}


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(str(value))


def _random_suffix() -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(6))
