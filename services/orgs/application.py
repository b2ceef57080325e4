"""orgs application: one method per command, one save each; returns plain data.

Imports the domain, the permission matrix, eventsourcing and shared errors/ports; no
framework. Ports (mailer, token usage, projects, clock) are attributes set by
`services.orgs.bootstrap`, so tests can swap them for fakes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import uuid
from datetime import datetime, timedelta, timezone
from typing import ContextManager, Any, Callable, Protocol
from urllib.parse import urlencode

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from services.shared.eventstore import retry_on_conflict
from services.shared.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, Unauthorized, PlatformError, rules_as
from services.shared.mail import Mail, Mailer

from . import permissions
from .domain import AccessToken, EmailAddress, InvitationPointer, Organization, RuleViolation, User

TOKEN_RE = re.compile(r"^sbp_[0-9a-f]{40}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
INVITE_RE = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{20,})$")
VERIFY_RE = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{20,100})$")
NEXT_RE = re.compile(r"^/(?![/\\])[\x21-\x7e]{0,500}$")  # a path on this site, never another origin
REGION_RE = re.compile(r"^[a-z]{2}-[a-z]+-\d$")
MAX_NAME = 256


class TokenUsage(Protocol):
    def touch(self, token_id: str) -> None: ...
    def last_used(self, token_ids: list[str]) -> dict[str, datetime]: ...


class ProjectsPort(Protocol):
    def count_projects(self, org_slug: str) -> int: ...


class MemoryTokenUsage:
    def __init__(self) -> None:
        self.seen: dict[str, datetime] = {}

    def touch(self, token_id: str) -> None:
        self.seen[token_id] = datetime.now(timezone.utc)

    def last_used(self, token_ids: list[str]) -> dict[str, datetime]:
        return {t: self.seen[t] for t in token_ids if t in self.seen}


def verify_password(hasher: Any, password: str, stored: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def secret_hash(secret: str) -> str:
    # Tokens carry >= 160 random bits, so a fast hash is enough to make the stored form useless.
    return hashlib.sha256(secret.encode()).hexdigest()


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "org"


def meta_of(ctx: dict[str, Any] | None) -> dict[str, Any]:
    ctx = ctx or {}
    return {k: ctx.get(k) for k in ("actor", "correlation_id", "causation_id")}


def _org_meta(ctx: dict[str, Any] | None, slug: str) -> dict[str, Any]:
    """Meta for organization events: also names the org, so the outbox can publish it."""
    return {**meta_of(ctx), "org_slug": slug}


def normalise_email(email: Any) -> str:
    if not isinstance(email, str):
        raise InvalidInput("email: must be a string")
    email = email.strip().lower()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise InvalidInput("email: not a valid email address")
    return email


def check_password(password: Any, field: str = "password") -> str:
    if not isinstance(password, str) or len(password) < 8:
        raise InvalidInput(f"{field}: must be at least 8 characters")
    if len(password) > 256:
        raise InvalidInput(f"{field}: at most 256 characters")
    return password


def _display_name(display_name: Any) -> str:
    if not isinstance(display_name, str) or len(display_name) > MAX_NAME:
        raise InvalidInput(f"display_name: at most {MAX_NAME} characters")
    return display_name.strip()


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{field}: must not be empty")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{field}: at most {MAX_NAME} characters")
    return name


class OrgsApplication(Application):
    name = "orgs"

    mailer: Mailer
    hasher: PasswordHasher = PasswordHasher()
    token_usage: TokenUsage = MemoryTokenUsage()
    public_url: str = "http://127.0.0.1:8080"
    invitation_ttl: timedelta = timedelta(hours=24)
    email_verification_ttl: timedelta = timedelta(hours=24)
    clock: Callable[[], datetime] = staticmethod(lambda: datetime.now(timezone.utc))

    # the read model (services/orgs/readmodel.py): set by bootstrap; None reads the aggregates
    views: Any = None

    def close(self) -> None:
        close = getattr(self.token_usage, "close", None)
        if callable(close):
            close()
        super().close()

    # ===== read model ==========================================================================
    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Every save also writes the saved users', tokens' and organizations' rows of the
        read model: in the events' transaction on PostgreSQL, right after it in memory."""
        rows = [r for o in objs for r in self._view_rows(o)] if self.views is not None else []
        if rows and self.views.in_transaction:
            kwargs["read_model"] = rows
        recordings = super().save(*objs, **kwargs)
        if rows and not self.views.in_transaction:
            self.views.apply(rows)
        return recordings

    def _view_rows(self, obj: Any) -> list[tuple[Any, ...]]:
        if isinstance(obj, User):
            return [("user", str(obj.id), obj.version, self._user_view(obj))]
        if isinstance(obj, AccessToken):
            return [("token", str(obj.id), str(obj.user_id), bool(obj.revoked), getattr(obj, "expires_at", None),
                     obj.version)]
        if isinstance(obj, Organization):
            view = {**self._org_view(obj), "members": dict(obj.members)}
            del view["role"]
            return [("org", obj.slug, bool(obj.deleted), obj.version, view)]
        return []

    def rebuild_views(self) -> int:
        """Fill the read model again from the events (`platformctl projections rebuild orgs.views`)."""
        topics = [get_topic(User.Registered), get_topic(AccessToken.Issued), get_topic(Organization.Created)]
        rows: list[tuple[Any, ...]] = []
        position: int | None = 1
        while True:
            batch = self.recorder.select_notifications(position, limit=1000, topics=topics)
            for n in batch:
                rows += self._view_rows(self.repository.get(n.originator_id))
            if len(batch) < 1000:
                break
            position = batch[-1].id + 1
        return int(self.views.replace_all(rows))

    # ===== users ===============================================================================
    def register_user(self, email: str, password: str, ctx: dict[str, Any] | None = None,
                      display_name: str = "") -> dict[str, Any]:
        """Operator path (`platformctl users create`): an account ready to use, its address
        vouched for by the operator. Says when the address is taken (operators may know)."""
        email = normalise_email(email)
        check_password(password)
        display_name = _display_name(display_name)
        meta = meta_of(ctx)
        user = User(email=email, password_hash=self.hasher.hash(password), display_name=display_name, meta=meta,
                    email_verified=True)
        claim = self._claim_email(email, str(user.id), meta)
        self._save_unique(f"a user with email {email} already exists", user, claim)
        return self._user_view(user)

    def sign_up(self, email: str, password: str, ctx: dict[str, Any] | None = None, display_name: str = "",
                next_path: str | None = None) -> None:
        """Public sign-up. The answer is the same whether the address is new or taken, and so
        is the work (one argon2 hash, one save, one mail): a new address gets a pending account
        and a link to confirm it; a pending one (nobody confirmed it yet) a fresh link bound to
        this sign-up's password; a taken one a mail telling its owner someone tried."""
        email = normalise_email(email)
        check_password(password)
        display_name = _display_name(display_name)
        password_hash = self.hasher.hash(password)
        meta = meta_of(ctx)
        for _ in range(3):
            try:
                existing = self._user_by_email(email, missing=NotFound(email))
            except NotFound:
                user = User(email=email, password_hash=password_hash, display_name=display_name, meta=meta,
                            pending=True)
                link = self._new_verification(user, password_hash, None, next_path, meta)
                try:
                    self.save(user, self._claim_email(email, str(user.id), meta))
                except (IntegrityError, Conflict):
                    continue  # claimed meanwhile by a concurrent sign-up: answer as for a taken one
                self._send_verification(email, link, signup=True)
                return
            if existing.pending and not existing.disabled:
                link = self._new_verification(existing, password_hash, display_name, next_path, meta)
                try:
                    self.save(existing)
                except IntegrityError:
                    continue
                self._send_verification(email, link, signup=True)
                return
            self._send_signup_attempted(existing)
            return
        raise Conflict("sign-up is busy for this address; try again")

    @retry_on_conflict
    def request_email_verification(self, user_id: str, ctx: dict[str, Any] | None = None,
                                   next_path: str | None = None) -> dict[str, Any]:
        """A signed-in user asks for a link confirming their current address."""
        user = self._user(user_id)
        if user.email_verified:
            return {"email": user.email, "sent": False}
        link = self._new_verification(user, None, None, next_path, meta_of(ctx))
        self.save(user)
        self._send_verification(user.email, link, signup=False)
        return {"email": user.email, "sent": True}

    @retry_on_conflict
    def verify_email(self, token: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Follow a verification link: single use (the link is forgotten once used, and a newer
        link replaces it), valid for `email_verification_ttl`, for the address it was sent to."""
        invalid = InvalidInput("token: this link is not valid (already used, replaced by a newer one, or mistyped)")
        m = VERIFY_RE.match(token) if isinstance(token, str) else None
        if not m:
            raise invalid
        user_hex, secret = m.groups()
        try:
            user = self._user(str(uuid.UUID(user_hex)))
        except NotFound:
            raise invalid from None
        v = user.verification
        if v is None or v["email"] != user.email or not hmac.compare_digest(v["token_hash"], secret_hash(secret)):
            raise invalid
        if v["expires_at"] <= self.clock():
            raise Gone("this link has expired; sign up again, or ask for a new link from your profile")
        if user.disabled:
            raise Unauthorized("account disabled")
        with _rules(Conflict):
            user.verify_email(meta=meta_of(ctx))
        self.save(user)
        return self._user_view(user)

    def authenticate_password(self, email: str, password: str) -> dict[str, Any]:
        failure = Unauthorized("wrong email or password")
        try:
            email = normalise_email(email)
        except InvalidInput:
            raise failure from None
        try:
            user = self._user_by_email(email, missing=failure)
        except Unauthorized:
            # An unknown email costs the same argon2 work as a known one: no timing oracle.
            dummy = getattr(self.hasher, "dummy_hash", None)
            if callable(dummy) and isinstance(password, str):
                verify_password(self.hasher, password, dummy())
            raise
        if user.disabled or not isinstance(password, str) or not verify_password(self.hasher, password, user.password_hash):
            raise failure
        if user.pending:
            raise failure  # an unconfirmed sign-up: the same answer, or sign-in would tell it is new
        return self._user_view(user)

    def get_user(self, user_id: str) -> dict[str, Any]:
        if self.views is not None:
            view = self.views.user(user_id)
            if view is None:
                raise NotFound("user not found")
            return dict(view)
        return self._user_view(self._user(user_id))

    @retry_on_conflict
    def update_profile(self, user_id: str, changes: dict[str, Any], ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        user = self._user(user_id)
        meta = meta_of(ctx)
        pending: list[Any] = [user]
        if "display_name" in changes:
            dn = changes["display_name"]
            if not isinstance(dn, str) or len(dn) > MAX_NAME:
                raise InvalidInput(f"display_name: at most {MAX_NAME} characters")
            if dn.strip() != user.display_name:
                user.update_profile(display_name=dn.strip(), meta=meta)
        if "email" in changes:
            new = normalise_email(changes["email"])
            if new != user.email:
                old_claim = self.repository.get(EmailAddress.create_id(user.email))
                old_claim.release(meta=meta)
                pending += [old_claim, self._claim_email(new, str(user.id), meta)]
                user.change_email(email=new, meta=meta)
                link = self._new_verification(user, None, None, None, meta)
                self._save_unique("that email address is already in use", *pending)
                self._send_verification(new, link, signup=False)
                return self._user_view(user)
        self._save_unique("that email address is already in use", *pending)
        return self._user_view(user)

    @retry_on_conflict
    def change_password(self, user_id: str, current_password: str, new_password: str,
                        ctx: dict[str, Any] | None = None, revoke_tokens: bool = False) -> dict[str, Any]:
        """Change the password; with `revoke_tokens`, every personal access token of the user
        is revoked in the same save (each publishes token_revoked, so every gateway forgets it)."""
        user = self._user(user_id)
        if not isinstance(current_password, str) or not verify_password(self.hasher, current_password, user.password_hash):
            raise InvalidInput("current_password: does not match")
        check_password(new_password, "new_password")
        meta = meta_of(ctx)
        user.change_password(password_hash=self.hasher.hash(new_password), meta=meta)
        revoked: list[Any] = []
        if revoke_tokens:
            for token_id in list(user.token_ids):
                at: AccessToken = self.repository.get(uuid.UUID(token_id))
                at.revoke(meta=meta)
                user.remove_token(token_id=token_id, meta=meta)
                revoked.append(at)
        self.save(user, *revoked)
        return {"tokens_revoked": len(revoked)}

    @retry_on_conflict
    def select_organization(self, user_id: str, slug: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        user = self._user(user_id)
        org = self._org(slug)
        if org.role_of(user_id) is None:
            raise NotFound(f"organization {slug} not found")
        user.select_organization(org_slug=slug, meta=meta_of(ctx))
        self.save(user)
        return self._user_view(user)

    # ===== access tokens =======================================================================
    def issue_token(self, email: str, name: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Operator path (platformctl): a token for the user with this email."""
        user = self._user_by_email(normalise_email(email), missing=NotFound(f"no user with email {email}"))
        return self.create_token(str(user.id), name or "token", ctx)

    @retry_on_conflict
    def create_token(self, user_id: str, name: str, ctx: dict[str, Any] | None = None,
                     expires_in_days: int | None = None) -> dict[str, Any]:
        name = check_name(name)
        if expires_in_days is not None and (not isinstance(expires_in_days, int) or isinstance(expires_in_days, bool)
                                            or not 1 <= expires_in_days <= 3650):
            raise InvalidInput("expires_in_days: a whole number of days from 1 to 3650")
        expires_at = (self.clock() + timedelta(days=expires_in_days)).isoformat() if expires_in_days else None
        user = self._user(user_id)
        meta = meta_of(ctx)
        token = "sbp_" + secrets.token_hex(20)
        at = AccessToken(token_hash=secret_hash(token), user_id=str(user.id), name=name, prefix=token[:8], meta=meta,
                         expires_at=expires_at)
        user.add_token(token_id=str(at.id), meta=meta)
        self.save(at, user)
        return {**self._token_view(at, None), "token": token}

    def list_tokens(self, user_id: str) -> list[dict[str, Any]]:
        user = self._user(user_id)
        used = self.token_usage.last_used(list(user.token_ids))
        return [self._token_view(self.repository.get(uuid.UUID(t)), used.get(t)) for t in user.token_ids]

    @retry_on_conflict
    def revoke_token(self, user_id: str, token_id: str, ctx: dict[str, Any] | None = None) -> None:
        user = self._user(user_id)
        if token_id not in user.token_ids:
            raise NotFound("token not found")
        at: AccessToken = self.repository.get(uuid.UUID(token_id))
        meta = meta_of(ctx)
        at.revoke(meta=meta)
        user.remove_token(token_id=token_id, meta=meta)
        self.save(at, user)

    def authenticate_token(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise Unauthorized("invalid access token")
        if self.views is not None:
            return self._authenticate_from_views(token)
        try:
            at: AccessToken = self.repository.get(AccessToken.create_id(secret_hash(token)))
        except AggregateNotFoundError:
            raise Unauthorized("invalid access token") from None
        if at.revoked:
            raise Unauthorized("access token revoked")
        expires_at = getattr(at, "expires_at", None)
        if expires_at and datetime.fromisoformat(expires_at) <= self.clock():
            raise Unauthorized("access token expired")
        user = self._user(at.user_id)
        if user.disabled:
            raise Unauthorized("account disabled")
        self.token_usage.touch(str(at.id))
        return self._user_view(user)

    def _authenticate_from_views(self, token: str) -> dict[str, Any]:
        """The same rules as from the aggregates, answered by one indexed query."""
        token_id = str(AccessToken.create_id(secret_hash(token)))
        found = self.views.token(token_id)
        if found is None:
            raise Unauthorized("invalid access token")
        revoked, expires_at, user = found
        if revoked:
            raise Unauthorized("access token revoked")
        if expires_at and datetime.fromisoformat(expires_at) <= self.clock():
            raise Unauthorized("access token expired")
        if user.get("disabled"):
            raise Unauthorized("account disabled")
        self.token_usage.touch(token_id)
        return dict(user)

    # ===== organizations =======================================================================
    def create_organization(self, user_id: str, name: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        name = check_name(name)
        base = slugify(name)
        meta = meta_of(ctx)
        for attempt in range(8):
            user = self._user(user_id)
            slug = base if attempt == 0 else f"{base}-{_random_suffix()}"
            org = Organization(slug=slug, name=name, owner_user_id=str(user.id), meta=meta)
            user.join(org_slug=slug, role="owner", meta=meta)
            try:
                self.save(org, user)
                return self._org_view(org, str(user.id))
            except IntegrityError:
                continue  # slug taken (or user changed concurrently): reload, try another
        raise Conflict("could not find a free slug for that name; choose another name")

    def get_organization(self, user_id: str, slug: str) -> dict[str, Any]:
        return self._org_view(self._authorized(user_id, slug, "org.read"), user_id)

    def list_organizations(self, user_id: str) -> list[dict[str, Any]]:
        """The caller's organizations with their role in each; from the read model, one query."""
        if self.views is None:
            user = self._user(user_id)
            return [self._org_view(self._org(s), user_id) for s in user.organizations]
        views = self.views.organizations_of(user_id)
        if views is None:
            raise NotFound("user not found")
        out = []
        for view in views:
            members = view.pop("members", {})
            out.append({**view, "role": members.get(str(user_id))})
        return out

    @retry_on_conflict
    def update_organization(self, user_id: str, slug: str, changes: dict[str, Any],
                            ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        org = self._authorized(user_id, slug, "org.update")
        meta = _org_meta(ctx, slug)
        unknown = set(changes) - {"name", "billing_email", "default_region"}
        if unknown:
            raise InvalidInput(f"{sorted(unknown)[0]}: unknown field")
        settings: dict[str, Any] = {}
        if "billing_email" in changes:
            settings["billing_email"] = None if changes["billing_email"] in (None, "") else normalise_email(changes["billing_email"])
        if "default_region" in changes:
            region = changes["default_region"]
            if region is not None and (not isinstance(region, str) or not REGION_RE.match(region)):
                raise InvalidInput("default_region: must be a region code like us-east-1")
            settings["default_region"] = region
        if "name" in changes:
            name = check_name(changes["name"])
            if name != org.name:
                org.rename(name=name, meta=meta)
        settings = {k: v for k, v in settings.items() if getattr(org, k) != v}
        if settings:
            org.change_settings(changes=settings, meta=meta)
        self.save(org)
        return self._org_view(org, user_id)

    @retry_on_conflict
    def delete_organization(self, user_id: str, slug: str, projects: ProjectsPort,
                            ctx: dict[str, Any] | None = None) -> None:
        org = self._authorized(user_id, slug, "org.delete")
        count = projects.count_projects(slug)
        if count:
            raise Conflict(f"organization {slug} still has {count} project(s); delete them first")
        meta = _org_meta(ctx, slug)
        users = [self._user(u) for u in org.members]
        org.delete(meta=meta)
        for u in users:
            u.left(org_slug=slug, meta=meta)
        self.save(org, *users)

    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
        """For other services: may this user do `action` in this org? Returns the org and role."""
        if action not in permissions.BY_NAME:
            raise InvalidInput(f"action: unknown action {action}")
        org = self._authorized(user_id, slug, action)
        return {"slug": org.slug, "name": org.name, "role": org.role_of(user_id)}

    # ===== members =============================================================================
    def list_members(self, user_id: str, slug: str) -> list[dict[str, Any]]:
        org = self._authorized(user_id, slug, "members.read")
        out = []
        for member_id, role in org.members.items():
            u = self._user(member_id)
            out.append({"user_id": member_id, "email": u.email, "display_name": u.display_name, "role": role})
        return out

    def list_org_members(self, slug: str, roles: list[str] | None = None) -> list[dict[str, Any]]:
        """For other services (no caller to check): an organization's members, optionally
        only those with one of `roles` (metering mails usage alerts to owners and admins)."""
        org = self._org(slug)
        out = []
        for member_id, role in org.members.items():
            if roles is None or role in roles:
                u = self._user(member_id)
                out.append({"user_id": member_id, "email": u.email, "display_name": u.display_name, "role": role})
        return out

    @retry_on_conflict
    def change_member_role(self, user_id: str, slug: str, member_id: str, role: str,
                           ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        org = self._authorized(user_id, slug, "members.change_role")
        target = org.members.get(member_id)
        if target is None:
            raise NotFound("member not found")
        if "owner" in (target, role):
            self._check(org, user_id, "members.manage_owners")
        with _rules():
            org.change_role(user_id=member_id, role=role, meta=_org_meta(ctx, slug))
        self.save(org)
        return {"user_id": member_id, "role": role}

    @retry_on_conflict
    def remove_member(self, user_id: str, slug: str, member_id: str, ctx: dict[str, Any] | None = None) -> None:
        if member_id == user_id:
            return self.leave_organization(user_id, slug, ctx)
        org = self._authorized(user_id, slug, "members.remove")
        target = org.members.get(member_id)
        if target is None:
            raise NotFound("member not found")
        if target == "owner":
            self._check(org, user_id, "members.manage_owners")
        meta = _org_meta(ctx, slug)
        with _rules():
            org.remove_member(user_id=member_id, reason="removed", meta=meta)
        member = self._user(member_id)
        member.left(org_slug=slug, meta=meta)
        self.save(org, member)

    @retry_on_conflict
    def leave_organization(self, user_id: str, slug: str, ctx: dict[str, Any] | None = None) -> None:
        org = self._authorized(user_id, slug, "org.leave")
        meta = _org_meta(ctx, slug)
        with _rules():
            org.remove_member(user_id=user_id, reason="left", meta=meta)
        user = self._user(user_id)
        user.left(org_slug=slug, meta=meta)
        self.save(org, user)

    @retry_on_conflict
    def transfer_ownership(self, user_id: str, slug: str, to_user_id: str, ctx: dict[str, Any] | None = None) -> None:
        org = self._authorized(user_id, slug, "org.transfer_ownership")
        if to_user_id not in org.members:
            raise NotFound("member not found")
        with _rules():
            org.transfer_ownership(from_user=user_id, to_user=to_user_id, meta=_org_meta(ctx, slug))
        self.save(org)

    # ===== invitations =========================================================================
    @retry_on_conflict
    def invite_member(self, user_id: str, slug: str, email: str, role: str,
                      ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        org = self._authorized(user_id, slug, "members.invite")
        email = normalise_email(email)
        if role not in permissions.ROLES:
            raise InvalidInput(f"role: must be one of {', '.join(permissions.ROLES)}")
        if role == "owner":
            self._check(org, user_id, "members.manage_owners")
        meta = _org_meta(ctx, slug)
        member_emails = {self._user(m).email for m in org.members}
        pointer = InvitationPointer(org_slug=slug, meta=meta)
        inv_id = pointer.id.hex
        secret = secrets.token_urlsafe(32)
        expires = self.clock() + self.invitation_ttl
        with _rules(Conflict):
            org.invite(invitation_id=inv_id, email=email, role=role, secret_hash=secret_hash(secret),
                       expires_at=expires, member_emails=member_emails, meta=meta)
        self.save(org, pointer)
        self._send_invitation(org, inv_id, email, role, f"{inv_id}.{secret}", user_id)
        return self._invitation_view(org, inv_id)

    def list_invitations(self, user_id: str, slug: str) -> list[dict[str, Any]]:
        org = self._authorized(user_id, slug, "invitations.read")
        return [self._invitation_view(org, i) for i in org.invitations]

    @retry_on_conflict
    def resend_invitation(self, user_id: str, slug: str, invitation_id: str,
                          ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        org = self._authorized(user_id, slug, "invitations.manage")
        inv = self._invitation_of(org, invitation_id)
        secret = secrets.token_urlsafe(32)
        with _rules(Conflict):
            org.resend_invitation(invitation_id=invitation_id, secret_hash=secret_hash(secret),
                                  expires_at=self.clock() + self.invitation_ttl, meta=_org_meta(ctx, slug))
        self.save(org)
        self._send_invitation(org, invitation_id, inv["email"], inv["role"], f"{invitation_id}.{secret}", user_id)
        return self._invitation_view(org, invitation_id)

    @retry_on_conflict
    def revoke_invitation(self, user_id: str, slug: str, invitation_id: str, ctx: dict[str, Any] | None = None) -> None:
        org = self._authorized(user_id, slug, "invitations.manage")
        self._invitation_of(org, invitation_id)
        with _rules(Conflict):
            org.revoke_invitation(invitation_id=invitation_id, meta=_org_meta(ctx, slug))
        self.save(org)

    def get_invitation(self, token: str) -> dict[str, Any]:
        """What an invitee sees before accepting: organization, role, status."""
        org, inv_id = self._invitation_by_token(token)
        inv = org.invitations[inv_id]
        return {"organization": {"slug": org.slug, "name": org.name}, "email": inv["email"], "role": inv["role"],
                "status": self._status(inv), "expires_at": inv["expires_at"].isoformat()}

    @retry_on_conflict
    def accept_invitation(self, user_id: str, token: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        org, inv_id = self._invitation_by_token(token)
        inv = org.invitations[inv_id]
        status = self._status(inv)
        if status == "accepted":
            raise Gone("this invitation has already been used")
        if status == "revoked":
            raise Gone("this invitation was revoked")
        if status == "expired":
            raise Gone("this invitation has expired; ask for a new one")
        user = self._user(user_id)
        if user.email != inv["email"]:
            raise Forbidden("this invitation was sent to a different email address")
        if not user.email_verified:
            raise Forbidden("confirm your email address first: follow the link we mail you "
                            "(your profile can send a new one), then accept the invitation")
        meta = _org_meta(ctx, org.slug)
        with _rules(Conflict):
            org.accept_invitation(invitation_id=inv_id, user_id=user_id, meta=meta)
        user.join(org_slug=org.slug, role=inv["role"], meta=meta)
        self.save(org, user)
        return self._org_view(org, user_id)

    # ===== audit ===============================================================================
    def audit_log(self, user_id: str, slug: str, limit: int = 100) -> list[dict[str, Any]]:
        org = self._authorized(user_id, slug, "audit.read")
        emails: dict[str, str | None] = {}
        entries = []
        for e in self.repository.event_store.get(org.id):
            actor = (getattr(e, "meta", None) or {}).get("actor")
            if actor and actor not in emails:
                try:
                    emails[actor] = self._user(actor).email
                except NotFound:
                    emails[actor] = None
            details = {k: _plain(v) for k, v in e.__dict__.items()
                       if k not in ("originator_id", "originator_version", "timestamp", "meta", "secret_hash",
                                    "originator_topic", "member_emails")}
            entries.append({
                "at": e.timestamp.isoformat(), "action": _snake(type(e).__name__), "version": e.originator_version,
                "actor_id": actor, "actor_email": emails.get(actor) if actor else None, "details": details,
            })
        entries.reverse()
        return entries[: max(1, min(int(limit), 1000))]

    # ===== platform administration =============================================================
    # Platform admins (User.is_admin) see and manage the whole platform; the flag is set by an
    # operator (`platformctl users promote`) or by another admin, never by organization roles.
    @retry_on_conflict
    def promote_user(self, email: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Operator path (platformctl): make the user with this email a platform admin."""
        user = self._user_by_email(normalise_email(email), missing=NotFound(f"no user with email {email}"))
        if user.set_admin(True, meta=meta_of(ctx)):
            self.save(user)
        return self._user_view(user)

    def require_admin(self, user_id: str) -> dict[str, Any]:
        """For the gateway and other services: this user is an enabled platform admin, or Forbidden."""
        try:
            user = self._user(user_id)
        except NotFound:
            raise Forbidden("platform admins only") from None
        if not user.is_admin or user.disabled:
            raise Forbidden("platform admins only")
        return self._user_view(user)

    def admin_stats(self, actor_id: str) -> dict[str, Any]:
        self.require_admin(actor_id)
        users = self._all(User)
        orgs = self._all(Organization)
        return {"users": len(users), "admins": sum(1 for u in users if u.is_admin),
                "disabled_users": sum(1 for u in users if u.disabled), "organizations": len(orgs),
                "memberships": sum(len(o.members) for o in orgs),
                "pending_invitations": sum(1 for o in orgs for i in o.invitations.values()
                                           if self._status(i) == "pending")}

    def admin_list_users(self, actor_id: str) -> list[dict[str, Any]]:
        self.require_admin(actor_id)
        return [{**self._user_view(u), "disabled": u.disabled, "created_at": u.created_on.isoformat()}
                for u in self._all(User)]

    def admin_list_organizations(self, actor_id: str) -> list[dict[str, Any]]:
        self.require_admin(actor_id)
        out = []
        for org in self._all(Organization):
            owners = []
            for member_id in org.owners():
                try:
                    owners.append(self._user(member_id).email)
                except NotFound:
                    continue
            out.append({**self._org_view(org), "members": len(org.members), "owners": owners})
        return out

    @retry_on_conflict
    def admin_set_admin(self, actor_id: str, user_id: str, is_admin: bool,
                        ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        self.require_admin(actor_id)
        if user_id == actor_id and not is_admin:
            raise Conflict("you cannot take away your own admin rights; ask another admin")
        user = self._user(user_id)
        if user.set_admin(bool(is_admin), meta=meta_of(ctx)):
            self.save(user)
        return {**self._user_view(user), "disabled": user.disabled, "created_at": user.created_on.isoformat()}

    @retry_on_conflict
    def admin_set_disabled(self, actor_id: str, user_id: str, disabled: bool,
                           ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        self.require_admin(actor_id)
        if user_id == actor_id and disabled:
            raise Conflict("you cannot disable your own account")
        user = self._user(user_id)
        if user.set_disabled(bool(disabled), meta=meta_of(ctx)):
            self.save(user)
        return {**self._user_view(user), "disabled": user.disabled, "created_at": user.created_on.isoformat()}

    def permissions_in(self, user_id: str, slug: str) -> dict[str, Any]:
        """Your role in an organization and every action of the matrix it allows."""
        org = self._authorized(user_id, slug, "org.read")
        role = org.role_of(user_id)
        return {"role": role, "actions": [a.name for a in permissions.MATRIX if permissions.allowed(role, a.name)]}

    def _all(self, kind: type[Any]) -> list[Any]:
        """Every live aggregate of a kind, oldest first, found through its creation events in
        the notification log (no read model: the admin pages are the only ones to list all)."""
        topic = get_topic(kind.Registered if kind is User else kind.Created)
        found: list[Any] = []
        position: int | None = 1
        while True:
            batch = self.recorder.select_notifications(position, limit=1000, topics=[topic])
            for n in batch:
                item = self.repository.get(n.originator_id)
                if not getattr(item, "deleted", False):
                    found.append(item)
            if len(batch) < 1000:
                return found
            position = batch[-1].id + 1

    # ===== helpers =============================================================================
    def _authorized(self, user_id: str, slug: str, action: str) -> Organization:
        """The one place org permissions are enforced: non-members get 404, others 403."""
        org = self._org(slug)
        if org.role_of(user_id) is None:
            raise NotFound(f"organization {slug} not found")
        self._check(org, user_id, action)
        return org

    @staticmethod
    def _check(org: Organization, user_id: str, action: str) -> None:
        try:
            permissions.authorize(org.role_of(user_id) or "", action)
        except permissions.NotAllowed as e:
            raise Forbidden(str(e)) from None

    def _invitation_by_token(self, token: str) -> tuple[Organization, str]:
        m = INVITE_RE.match(token) if isinstance(token, str) else None
        if not m:
            raise InvalidInput("token: not a valid invitation token")
        inv_id, secret = m.groups()
        try:
            pointer: InvitationPointer = self.repository.get(uuid.UUID(inv_id))
            org = self._org(pointer.org_slug)
        except (AggregateNotFoundError, NotFound):
            raise NotFound("invitation not found") from None
        inv = org.invitations.get(inv_id)
        if inv is None or not hmac.compare_digest(inv["secret_hash"], secret_hash(secret)):
            # A resent invitation invalidates the old link: same answer as a made-up one.
            raise NotFound("invitation not found (it may have been resent with a new link)")
        if org.deleted:
            raise Gone("the organization no longer exists")
        return org, inv_id

    @staticmethod
    def _invitation_of(org: Organization, invitation_id: str) -> dict[str, Any]:
        inv = org.invitations.get(invitation_id)
        if inv is None:
            raise NotFound("invitation not found")
        return inv

    def _status(self, inv: dict[str, Any]) -> str:
        if inv["status"] == "pending" and inv["expires_at"] <= self.clock():
            return "expired"
        return str(inv["status"])

    def _invitation_view(self, org: Organization, inv_id: str) -> dict[str, Any]:
        inv = org.invitations[inv_id]
        return {"id": inv_id, "email": inv["email"], "role": inv["role"], "status": self._status(inv),
                "expires_at": inv["expires_at"].isoformat()}

    def _send_invitation(self, org: Organization, inv_id: str, email: str, role: str, token: str, inviter_id: str) -> None:
        inviter = self._user(inviter_id)
        link = f"{self.public_url.rstrip('/')}/invitations/accept?token={token}"
        body = (
            f"{inviter.display_name or inviter.email} invited you to join the organization "
            f"\"{org.name}\" as {role}.\n\nAccept the invitation (valid for "
            f"{int(self.invitation_ttl.total_seconds() // 3600)} hours):\n{link}\n\n"
            f"Sign in or sign up with {email} to accept. If you did not expect this, ignore this email.\n"
        )
        self.mailer.send(Mail(to=email, subject=f"You're invited to join {org.name}", body=body))

    def _new_verification(self, user: User, password_hash: str | None, display_name: str | None,
                          next_path: str | None, meta: dict[str, Any]) -> str:
        """Record a fresh verification for the user's address (replacing any earlier link) and
        return the link to mail; only the secret's hash is stored."""
        secret = secrets.token_urlsafe(32)
        user.request_verification(token_hash=secret_hash(secret), email=user.email,
                                  expires_at=self.clock() + self.email_verification_ttl,
                                  password_hash=password_hash, display_name=display_name, meta=meta)
        query = {"token": f"{user.id.hex}.{secret}"}
        if next_path and NEXT_RE.match(next_path):
            query["next"] = next_path
        return f"{self.public_url.rstrip('/')}/verify-email?{urlencode(query)}"

    def _send_verification(self, email: str, link: str, signup: bool) -> None:
        hours = int(self.email_verification_ttl.total_seconds() // 3600)
        if signup:
            subject = "Confirm your sign-up"
            intro = "Someone, hopefully you, signed up with this address."
        else:
            subject = "Confirm your email address"
            intro = "Confirm that this address is yours."
        body = (f"{intro} Open this link to confirm it (valid for {hours} hours, once):\n{link}\n\n"
                "If you did not ask for this, ignore this email: nothing happens without the link.\n")
        self.mailer.send(Mail(to=email, subject=subject, body=body))

    def _send_signup_attempted(self, user: User) -> None:
        base = self.public_url.rstrip("/")
        body = ("Someone tried to sign up with this address, which already has an account.\n\n"
                f"If it was you, sign in instead: {base}/sign-in?{urlencode({'email': user.email})}\n"
                "If you forgot your password, ask your platform operator to reset it.\n"
                "If it was not you, you need not do anything: the account is unchanged.\n")
        self.mailer.send(Mail(to=user.email, subject="Someone tried to sign up with your address", body=body))

    def _claim_email(self, email: str, user_id: str, meta: dict[str, Any]) -> EmailAddress:
        try:
            claim: EmailAddress = self.repository.get(EmailAddress.create_id(email))
        except AggregateNotFoundError:
            return EmailAddress(email=email, user_id=user_id, meta=meta)
        with _rules(Conflict):
            claim.claim(user_id=user_id, meta=meta)
        return claim

    def _save_unique(self, message: str, *aggregates: Any) -> None:
        try:
            self.save(*aggregates)
        except IntegrityError:
            raise Conflict(message) from None

    def _user(self, user_id: str) -> User:
        try:
            user = self.repository.get(uuid.UUID(str(user_id)))
        except (AggregateNotFoundError, ValueError):
            raise NotFound("user not found") from None
        if not isinstance(user, User):
            raise NotFound("user not found")
        return user

    def _user_by_email(self, email: str, missing: Exception) -> User:
        try:
            claim: EmailAddress = self.repository.get(EmailAddress.create_id(email))
        except AggregateNotFoundError:
            raise missing from None
        if claim.user_id is None:
            raise missing
        return self._user(claim.user_id)

    def _org(self, slug: str) -> Organization:
        if not isinstance(slug, str) or not re.match(r"^[\w-]{1,64}$", slug):
            raise NotFound("organization not found")
        try:
            org: Organization = self.repository.get(Organization.create_id(slug=slug))
        except AggregateNotFoundError:
            raise NotFound(f"organization {slug} not found") from None
        if org.deleted:
            raise NotFound(f"organization {slug} not found")
        return org

    @staticmethod
    def _user_view(user: User) -> dict[str, Any]:
        return {"id": str(user.id), "email": user.email, "display_name": user.display_name,
                "current_organization": user.current_org, "organizations": list(user.organizations),
                "is_admin": user.is_admin, "disabled": user.disabled, "email_verified": user.email_verified}

    @staticmethod
    def _token_view(at: AccessToken, last_used: datetime | None) -> dict[str, Any]:
        return {"id": str(at.id), "name": at.name, "prefix": at.prefix, "created_at": at.created_on.isoformat(),
                "last_used_at": last_used.isoformat() if last_used else None,
                "expires_at": getattr(at, "expires_at", None)}

    @staticmethod
    def _org_view(org: Organization, user_id: str | None = None) -> dict[str, Any]:
        return {"id": org.slug, "slug": org.slug, "name": org.name, "billing_email": org.billing_email,
                "default_region": org.default_region, "created_at": org.created_on.isoformat(),
                "role": org.role_of(user_id) if user_id else None}


def _rules(error: type[PlatformError] = Conflict) -> ContextManager[None]:
    """Domain rule violations become user-facing errors (Conflict unless told otherwise)."""
    return rules_as(RuleViolation, error)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if k != "secret_hash"}
    return v


def _random_suffix() -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(6))
