"""The project's Auth API (`<project URL>/auth/v1/…`): a GoTrue-compatible implementation of
the part apps use, on the tenant's own `auth` schema (Supabase's tables and columns), run
inside the project edge (an upstream, `prefix = "auth/v1"`).

Built: signup (with the project's disable_signup, mailer_autoconfirm, password_min_length,
site_url; a confirmation mail with a working /verify link otherwise), the password and
refresh_token grants (refresh-token rotation with reuse detection), GET/PUT /user, /logout,
/settings, /health, /verify and the admin /admin/users API (service_role). Access tokens are
HS256 JWTs with Supabase's claims, signed with the project's JWT secret. OAuth, OTP, magic
links, MFA, SSO, recovery mail and PKCE answer 501 naming the feature. Errors carry GoTrue's
`error_code`s. Imports aiohttp, bcrypt, PyJWT, psycopg, the standard library, the shared
mail port and the edge's apis.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from collections import defaultdict, deque
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urlencode

import bcrypt
import jwt
from aiohttp import web
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from services.shared.mail import Mail, Mailer, make_mailer
from services.shared.settings import Settings

from .apis import Caller, Gone, TenantDirectory, bearer, decode, json_response

log = logging.getLogger("gateway.edge.auth")

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BCRYPT_COST = 10  # GoTrue's default
MAX_BODY = 256 * 1024
VERSION = "supaplatform-gotrue-compat/1"
NOT_BUILT = {
    "authorize": "OAuth sign-in (/authorize)", "callback": "OAuth sign-in (/callback)", "otp": "OTP sign-in (/otp)",
    "magiclink": "magic links (/magiclink)", "factors": "MFA (/factors)", "sso": "SSO (/sso)",
    "saml": "SAML SSO (/saml)", "recover": "password recovery mail (/recover)",
    "reauthenticate": "reauthentication (/reauthenticate)", "invite": "invitations (/invite)",
    "resend": "resending mail (/resend)", "admin/generate_link": "generated links (/admin/generate_link)",
    "user/identities": "identity linking (/user/identities)", "token?pkce": "the PKCE flow (grant_type=pkce)",
    "token?id_token": "ID-token sign-in (grant_type=id_token)", "admin/sso": "SSO providers (/admin/sso)",
    "admin/factors": "MFA (/admin/users/{id}/factors)", "oauth": "OAuth server (/oauth)",
}

USER_COLUMNS = ("id, aud, role, email, email_confirmed_at, confirmation_sent_at, confirmed_at, last_sign_in_at, "
                "raw_app_meta_data, raw_user_meta_data, created_at, updated_at, phone, banned_until, is_anonymous, "
                "encrypted_password, invited_at, deleted_at")


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> web.Response:
        return json_response(self.status, {"code": self.status, "error_code": self.code, "msg": self.message,
                                           **self.extra})


def _iso(value: Any) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else None


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def check_password(password: str, hashed: str | None) -> bool:
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


# A password check against a hash nobody has, so that an unknown email costs the same time.
_DUMMY_HASH = bcrypt.hashpw(b"no such user", bcrypt.gensalt(BCRYPT_COST)).decode()


class Windows:
    """Sliding-window rate limits: at most `limit` events per `window_s` per key."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, ...], deque[float]] = defaultdict(deque)

    def allow(self, key: tuple[str, ...], limit: int, window_s: float) -> bool:
        if limit <= 0:
            return True
        now = time.monotonic()
        q = self.events[key]
        while q and now - q[0] > window_s:
            q.popleft()
        if len(q) >= limit:
            return False
        q.append(now)
        if len(self.events) > 100_000:  # bounded memory: forget the oldest keys
            for stale in list(self.events)[:10_000]:
                self.events.pop(stale, None)
        return True


class AuthUpstream:
    prefix = "auth/v1"

    def __init__(self, settings: Settings, directory: TenantDirectory, mailer: Mailer | None = None):
        self.settings = settings
        self.directory = directory.acquire()
        self.mailer = mailer or make_mailer(settings)
        self.limits = Windows()

    # Reached without the project's key (the edge's open_paths): the mail link and health.
    open_paths = ("/verify", "/health")

    async def stop_tenant(self, ref: str) -> None:
        self.directory.forget_pool(ref, "auth")

    async def close(self) -> None:
        await self.directory.release()

    # -- dispatch ------------------------------------------------------------------------------
    async def open(self, call: Any) -> web.StreamResponse:
        request: web.Request = call.request
        path = unquote(call.rest.split("?", 1)[0]).rstrip("/") or "/"
        self.directory.prime(call.ref, getattr(call, "tenant", None))
        try:
            return await self._route(call.ref, request, path)
        except AuthError as exc:
            return exc.response()
        except Gone:
            return AuthError(404, "not_found", "project not found").response()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("auth database of %s unreachable: %s", call.ref, type(exc).__name__)
            self.directory.forget_pool(call.ref, "auth")
            return AuthError(503, "unexpected_failure", "the project's database is unavailable").response()

    async def _route(self, ref: str, request: web.Request, path: str) -> web.StreamResponse:
        m = request.method
        if path == "/health" and m in ("GET", "HEAD"):
            return json_response(200, {"version": VERSION, "name": "GoTrue", "description": "GoTrue-compatible Auth of the project"})
        config = await self.directory.auth_config(ref)
        if config.get("status") not in (None, "ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY"):
            raise AuthError(503, "project_inactive", f"the project is {config.get('status')}")
        if path == "/settings" and m == "GET":
            return json_response(200, self._settings_view(config))
        if path == "/signup" and m == "POST":
            return await self.signup(ref, request, config)
        if path == "/token" and m == "POST":
            grant = request.query.get("grant_type", "")
            if grant == "password":
                return await self.password_grant(ref, request, config)
            if grant == "refresh_token":
                return await self.refresh_grant(ref, request, config)
            if f"token?{grant}" in NOT_BUILT:
                raise AuthError(501, "not_implemented", f"{NOT_BUILT[f'token?{grant}']} is not built on this platform")
            raise AuthError(400, "unsupported_grant_type", "unsupported_grant_type")
        if path == "/user" and m == "GET":
            caller = await self._user_caller(ref, request)
            return json_response(200, await self._user_json(ref, caller.user_id))
        if path == "/user" and m == "PUT":
            return await self.update_user(ref, request, config)
        if path == "/logout" and m == "POST":
            return await self.logout(ref, request)
        if path == "/verify" and m in ("GET", "POST"):
            return await self.verify(ref, request, config)
        if path == "/admin/users" or path.startswith("/admin/users/"):
            return await self.admin(ref, request, path, config)
        for prefix, feature in NOT_BUILT.items():
            if "?" not in prefix and (path == "/" + prefix or path.startswith("/" + prefix + "/")):
                raise AuthError(501, "not_implemented", f"{feature} is not built on this platform")
        raise AuthError(404, "not_found", f"no Auth route {m} {path}")

    # -- helpers -------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise AuthError(413, "request_too_large", "request body too large")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise AuthError(413, "request_too_large", "request body too large")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise AuthError(400, "bad_json", "Could not parse request body as JSON") from None
        if not isinstance(body, dict):
            raise AuthError(400, "bad_json", "request body must be a JSON object")
        return body

    async def _caller(self, ref: str, request: web.Request) -> Caller:
        token = bearer(request)
        if not token:
            raise AuthError(401, "no_authorization", "This endpoint requires a Bearer token")
        secret = (await self.directory.credentials(ref))["jwt_secret"]
        try:
            claims = decode(token, secret)
        except jwt.ExpiredSignatureError:
            raise AuthError(403, "bad_jwt", "invalid JWT: token is expired") from None
        except jwt.InvalidTokenError:
            raise AuthError(403, "bad_jwt", "invalid JWT: unable to parse or verify signature") from None
        return Caller(role=str(claims["role"]), claims=claims, token=token)

    async def _user_caller(self, ref: str, request: web.Request) -> Caller:
        caller = await self._caller(ref, request)
        if caller.user_id is None:
            raise AuthError(403, "bad_jwt", "invalid claim: missing sub claim")
        return caller

    async def _admin_caller(self, ref: str, request: web.Request) -> Caller:
        caller = await self._caller(ref, request)
        if caller.role != "service_role":
            raise AuthError(403, "not_admin", "User not allowed")
        return caller

    def _limit(self, ref: str, what: str, limit: Any, window_s: float, request: web.Request, per_ip: bool = True) -> None:
        who = (request.headers.get("X-Forwarded-For") or request.remote or "-") if per_ip else "*"
        if isinstance(limit, int) and not self.limits.allow((ref, what, who), limit, window_s):
            code = "over_email_send_rate_limit" if what == "email" else "over_request_rate_limit"
            raise AuthError(429, code, "email rate limit exceeded" if what == "email" else "Request rate limit reached")

    @staticmethod
    def _settings_view(config: dict[str, Any]) -> dict[str, Any]:
        external = {p: False for p in ("anonymous_users", "apple", "azure", "bitbucket", "discord", "facebook",
                                       "figma", "github", "gitlab", "google", "keycloak", "kakao", "linkedin",
                                       "linkedin_oidc", "notion", "spotify", "slack", "slack_oidc", "workos",
                                       "twitch", "twitter", "zoom", "phone", "saml", "web3_solana")}
        external["email"] = bool(config.get("external_email_enabled", True))
        return {"external": external, "disable_signup": bool(config.get("disable_signup")),
                "mailer_autoconfirm": bool(config.get("mailer_autoconfirm")), "phone_autoconfirm": False,
                "sms_provider": "", "saml_enabled": False, "mfa_enabled": False}

    def _check_password(self, password: Any, config: dict[str, Any]) -> str:
        if not isinstance(password, str) or not password:
            raise AuthError(422, "validation_failed", "Password is required")
        minimum = int(config.get("password_min_length") or 6)
        if len(password) < minimum:
            raise AuthError(422, "weak_password", f"Password should be at least {minimum} characters.",
                            weak_password={"reasons": ["length"]})
        if len(password.encode()) > 72:
            raise AuthError(422, "weak_password", "Password cannot be longer than 72 characters",
                            weak_password={"reasons": ["length"]})
        return password

    @staticmethod
    def _check_email(email: Any) -> str:
        if not isinstance(email, str) or not EMAIL.match(email.strip()) or len(email) > 255:
            raise AuthError(400, "validation_failed", "Unable to validate email address: invalid format")
        return email.strip().lower()

    @staticmethod
    def _meta(value: Any, name: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise AuthError(400, "validation_failed", f"{name} must be an object")
        return value

    def project_url(self, ref: str) -> str:
        return self.settings.project_api_url(ref)

    # -- users and sessions in SQL -------------------------------------------------------------
    def _user_view(self, row: dict[str, Any], identities: list[dict[str, Any]]) -> dict[str, Any]:
        app_meta = row.get("raw_app_meta_data") or {}
        return {
            "id": str(row["id"]), "aud": row.get("aud") or "authenticated", "role": row.get("role") or "authenticated",
            "email": row.get("email") or "", "email_confirmed_at": _iso(row.get("email_confirmed_at")),
            "phone": row.get("phone") or "", "confirmation_sent_at": _iso(row.get("confirmation_sent_at")),
            "confirmed_at": _iso(row.get("confirmed_at")), "last_sign_in_at": _iso(row.get("last_sign_in_at")),
            "app_metadata": app_meta, "user_metadata": row.get("raw_user_meta_data") or {},
            "identities": [{"identity_id": str(i["id"]), "id": i["provider_id"], "user_id": str(i["user_id"]),
                            "identity_data": i["identity_data"], "provider": i["provider"],
                            "last_sign_in_at": _iso(i.get("last_sign_in_at")), "created_at": _iso(i.get("created_at")),
                            "updated_at": _iso(i.get("updated_at")), "email": i.get("email")} for i in identities],
            "created_at": _iso(row.get("created_at")), "updated_at": _iso(row.get("updated_at")),
            "banned_until": _iso(row.get("banned_until")), "is_anonymous": bool(row.get("is_anonymous")),
        }

    async def _user_row(self, conn: Any, *, user_id: str | None = None, email: str | None = None,
                        lock: bool = False) -> dict[str, Any] | None:
        where, arg = ("id = %s", user_id) if user_id else ("email = %s AND is_sso_user = false", email)
        if user_id:
            try:
                uuid.UUID(user_id)
            except ValueError:
                return None
        cur = await conn.execute(f"SELECT {USER_COLUMNS} FROM auth.users WHERE {where} AND deleted_at IS NULL"
                                 + (" FOR UPDATE" if lock else ""), (arg,))
        return await cur.fetchone()

    async def _identities(self, conn: Any, user_id: Any) -> list[dict[str, Any]]:
        cur = await conn.execute("SELECT * FROM auth.identities WHERE user_id = %s ORDER BY created_at", (user_id,))
        return list(await cur.fetchall())

    async def _user_json(self, ref: str, user_id: str | None) -> dict[str, Any]:
        pool = await self.directory.pool(ref, "auth")
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            row = await self._user_row(conn, user_id=user_id)
            if row is None:
                raise AuthError(403, "user_not_found", "User from sub claim in JWT does not exist")
            return self._user_view(row, await self._identities(conn, row["id"]))

    async def _create_user(self, conn: Any, *, email: str, password: str | None, user_meta: dict[str, Any],
                           app_meta: dict[str, Any] | None, confirmed: bool, confirmation_hash: str | None,
                           role: str = "authenticated") -> dict[str, Any]:
        hashed = await asyncio.to_thread(hash_password, password) if password else None
        user_id = uuid.uuid4()
        app = {"provider": "email", "providers": ["email"], **(app_meta or {})}
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at, "
                "confirmation_token, confirmation_sent_at, raw_app_meta_data, raw_user_meta_data, is_super_admin, "
                "created_at, updated_at, is_sso_user, is_anonymous, recovery_token, email_change_token_new, email_change) "
                "VALUES ('00000000-0000-0000-0000-000000000000', %s, 'authenticated', %s, %s, %s, "
                "CASE WHEN %s::boolean THEN now() END, %s, CASE WHEN %s::text IS NOT NULL THEN now() END, %s, %s, false, now(), now(), "
                "false, false, '', '', '') ON CONFLICT DO NOTHING RETURNING id",
                (user_id, role, email, hashed, confirmed, confirmation_hash or "", confirmation_hash,
                 json.dumps(app), json.dumps(user_meta)))
            if await cur.fetchone() is None:
                raise AuthError(422, "user_already_exists", "User already registered")
            await conn.execute(
                "INSERT INTO auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at, "
                "created_at, updated_at) VALUES (%s, %s, %s, 'email', now(), now(), now())",
                (str(user_id), user_id, json.dumps({"sub": str(user_id), "email": email, "email_verified": confirmed,
                                                    "phone_verified": False})))
        row = await self._user_row(conn, user_id=str(user_id))
        assert row is not None
        return row

    async def _issue_session(self, ref: str, conn: Any, user: dict[str, Any], config: dict[str, Any],
                             request: web.Request, *, session_id: uuid.UUID | None = None,
                             parent: str | None = None, method: str = "password") -> dict[str, Any]:
        """A new session (or a refresh of `session_id`): a refresh token, stored hashed, and an
        access token with Supabase's claims."""
        refresh = secrets.token_urlsafe(16)
        async with conn.transaction():
            if session_id is None:
                session_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip) "
                    "VALUES (%s, %s, now(), now(), 'aal1', %s, %s)",
                    (session_id, user["id"], request.headers.get("User-Agent", "")[:512], _ip(request)))
                await conn.execute("UPDATE auth.users SET last_sign_in_at = now(), updated_at = now() WHERE id = %s",
                                   (user["id"],))
            else:
                await conn.execute("UPDATE auth.sessions SET refreshed_at = now() AT TIME ZONE 'utc', updated_at = now() "
                                   "WHERE id = %s", (session_id,))
            await conn.execute(
                "INSERT INTO auth.refresh_tokens (instance_id, token, user_id, revoked, created_at, updated_at, parent, "
                "session_id) VALUES ('00000000-0000-0000-0000-000000000000', %s, %s, false, now(), now(), %s, %s)",
                (_hash_token(refresh), str(user["id"]), parent, session_id))
        if session_id is not None and parent is None:
            user = await self._user_row(conn, user_id=str(user["id"])) or user
        creds = await self.directory.credentials(ref)
        now = int(time.time())
        exp_s = int(config.get("jwt_exp") or 3600)
        claims = {
            "iss": f"{self.project_url(ref)}/auth/v1", "sub": str(user["id"]), "aud": user.get("aud") or "authenticated",
            "exp": now + exp_s, "iat": now, "email": user.get("email") or "", "phone": user.get("phone") or "",
            "app_metadata": user.get("raw_app_meta_data") or {}, "user_metadata": user.get("raw_user_meta_data") or {},
            "role": user.get("role") or "authenticated", "aal": "aal1",
            "amr": [{"method": method, "timestamp": now}], "session_id": str(session_id),
            "is_anonymous": bool(user.get("is_anonymous")),
        }
        access = jwt.encode(claims, creds["jwt_secret"], algorithm="HS256", headers={"kid": ref})
        return {"access_token": access, "token_type": "bearer", "expires_in": exp_s, "expires_at": now + exp_s,
                "refresh_token": refresh, "user": self._user_view(user, await self._identities(conn, user["id"]))}

    # -- routes --------------------------------------------------------------------------------
    async def signup(self, ref: str, request: web.Request, config: dict[str, Any]) -> web.Response:
        body = await self._body(request)
        if config.get("disable_signup"):
            raise AuthError(422, "signup_disabled", "Signups not allowed for this instance")
        if body.get("phone") and not body.get("email"):
            raise AuthError(501, "not_implemented", "phone sign-up (SMS) is not built on this platform")
        if not config.get("external_email_enabled", True):
            raise AuthError(422, "email_provider_disabled", "Email signups are disabled")
        email = self._check_email(body.get("email"))
        password = self._check_password(body.get("password"), config)
        meta = self._meta(body.get("data"), "data")
        autoconfirm = bool(config.get("mailer_autoconfirm"))
        token = None if autoconfirm else secrets.token_urlsafe(24)
        if token is not None:
            self._limit(ref, "email", config.get("rate_limit_email_sent"), 3600, request, per_ip=False)
        pool = await self.directory.pool(ref, "auth")
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            user = await self._create_user(conn, email=email, password=password, user_meta=meta, app_meta=None,
                                           confirmed=autoconfirm, confirmation_hash=_hash_token(token) if token else None)
            if autoconfirm:
                return json_response(200, await self._issue_session(ref, conn, user, config, request))
            view = self._user_view(user, await self._identities(conn, user["id"]))
        redirect = request.query.get("redirect_to") or config.get("site_url") or ""
        await self._send_confirmation(ref, email, token or "", redirect)
        return json_response(200, view)

    async def _send_confirmation(self, ref: str, email: str, token: str, redirect: str) -> None:
        link = (f"{self.project_url(ref)}/auth/v1/verify?"
                + urlencode({"token": token, "type": "signup", **({"redirect_to": redirect} if redirect else {})}))
        mail = Mail(to=email, subject="Confirm your signup",
                    body=f"Follow this link to confirm your email address:\n\n{link}\n")
        try:
            await asyncio.to_thread(self.mailer.send, mail)
        except Exception as exc:  # noqa: BLE001
            log.warning("confirmation mail for project %s failed: %s", ref, type(exc).__name__)
            raise AuthError(500, "unexpected_failure", "Error sending confirmation email") from None

    async def password_grant(self, ref: str, request: web.Request, config: dict[str, Any]) -> web.Response:
        self._limit(ref, "token", config.get("rate_limit_token_refresh"), 300, request)
        body = await self._body(request)
        if body.get("phone") and not body.get("email"):
            raise AuthError(501, "not_implemented", "phone sign-in (SMS) is not built on this platform")
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            raise AuthError(400, "validation_failed", "email and password are required")
        pool = await self.directory.pool(ref, "auth")
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            user = await self._user_row(conn, email=email.strip().lower())
            ok = await asyncio.to_thread(check_password, password, user["encrypted_password"] if user else _DUMMY_HASH)
            if user is None or not ok:
                raise AuthError(400, "invalid_credentials", "Invalid login credentials")
            if user.get("email_confirmed_at") is None:
                raise AuthError(400, "email_not_confirmed", "Email not confirmed")
            banned = user.get("banned_until")
            if banned is not None and banned > datetime.now(timezone.utc):
                raise AuthError(400, "user_banned", "User is banned")
            return json_response(200, await self._issue_session(ref, conn, user, config, request))

    async def refresh_grant(self, ref: str, request: web.Request, config: dict[str, Any]) -> web.Response:
        self._limit(ref, "token", config.get("rate_limit_token_refresh"), 300, request)
        body = await self._body(request)
        token = body.get("refresh_token")
        if not isinstance(token, str) or not token:
            raise AuthError(400, "validation_failed", "refresh_token required")
        reuse_s = int(config.get("security_refresh_token_reuse_interval") or 0)
        pool = await self.directory.pool(ref, "auth")
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT t.id, t.revoked, t.updated_at, t.session_id, t.user_id, s.not_after FROM auth.refresh_tokens t "
                    "JOIN auth.sessions s ON s.id = t.session_id WHERE t.token = %s FOR UPDATE OF t",
                    (_hash_token(token),))
                row = await cur.fetchone()
                if row is None:
                    raise AuthError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
                reused = False
                if row["revoked"]:
                    age = (datetime.now(timezone.utc) - row["updated_at"]).total_seconds()
                    if not config.get("refresh_token_rotation_enabled", True) or age > reuse_s:
                        # Reuse of a rotated token outside the grace interval: someone else may
                        # hold it. End the whole session (its tokens go with it), committed.
                        await conn.execute("DELETE FROM auth.sessions WHERE id = %s", (row["session_id"],))
                        reused = True
                else:
                    await conn.execute("UPDATE auth.refresh_tokens SET revoked = true, updated_at = now() WHERE id = %s",
                                       (row["id"],))
            if reused:
                raise AuthError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")
            user = await self._user_row(conn, user_id=row["user_id"])
            if user is None:
                raise AuthError(400, "user_not_found", "Invalid Refresh Token: User not found")
            return json_response(200, await self._issue_session(ref, conn, user, config, request,
                                                                session_id=row["session_id"],
                                                                parent=_hash_token(token)))

    async def update_user(self, ref: str, request: web.Request, config: dict[str, Any]) -> web.Response:
        caller = await self._user_caller(ref, request)
        body = await self._body(request)
        pool = await self.directory.pool(ref, "auth")
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            async with conn.transaction():
                user = await self._user_row(conn, user_id=caller.user_id, lock=True)
                if user is None:
                    raise AuthError(403, "user_not_found", "User from sub claim in JWT does not exist")
                if "password" in body and body["password"] is not None:
                    password = self._check_password(body["password"], config)
                    if await asyncio.to_thread(check_password, password, user["encrypted_password"]):
                        raise AuthError(422, "same_password", "New password should be different from the old password.")
                    hashed = await asyncio.to_thread(hash_password, password)
                    await conn.execute("UPDATE auth.users SET encrypted_password = %s, updated_at = now() WHERE id = %s",
                                       (hashed, user["id"]))
                if "data" in body:
                    meta = self._meta(body["data"], "data")
                    await conn.execute("UPDATE auth.users SET raw_user_meta_data = coalesce(raw_user_meta_data, '{}') "
                                       "|| %s::jsonb, updated_at = now() WHERE id = %s", (json.dumps(meta), user["id"]))
                if body.get("email") is not None:
                    email = self._check_email(body["email"])
                    if email != user["email"]:
                        if not config.get("mailer_autoconfirm"):
                            raise AuthError(501, "not_implemented",
                                            "email change with confirmation mail is not built on this platform")
                        await self._set_email(conn, user["id"], email)
                if body.get("phone"):
                    raise AuthError(501, "not_implemented", "phone numbers (SMS) are not built on this platform")
            return json_response(200, await self._user_view_by_id(conn, str(user["id"])))

    async def _set_email(self, conn: Any, user_id: Any, email: str) -> None:
        exists = await (await conn.execute("SELECT 1 FROM auth.users WHERE email = %s AND id <> %s",
                                           (email, user_id))).fetchone()
        if exists:
            raise AuthError(422, "email_exists", "A user with this email address has already been registered")
        await conn.execute("UPDATE auth.users SET email = %s, updated_at = now() WHERE id = %s", (email, user_id))
        await conn.execute("UPDATE auth.identities SET identity_data = identity_data || jsonb_build_object('email', %s::text), "
                           "updated_at = now() WHERE user_id = %s AND provider = 'email'", (email, user_id))

    async def logout(self, ref: str, request: web.Request) -> web.Response:
        caller = await self._user_caller(ref, request)
        scope = request.query.get("scope", "global")
        if scope not in ("global", "local", "others"):
            raise AuthError(400, "validation_failed", "scope must be global, local or others")
        session = caller.claims.get("session_id")
        pool = await self.directory.pool(ref, "auth")
        async with pool.connection() as conn:
            if scope == "global":
                await conn.execute("DELETE FROM auth.sessions WHERE user_id = %s", (caller.user_id,))
            elif scope == "local":
                await conn.execute("DELETE FROM auth.sessions WHERE id = %s AND user_id = %s", (session, caller.user_id))
            else:
                await conn.execute("DELETE FROM auth.sessions WHERE id <> %s AND user_id = %s", (session, caller.user_id))
        return web.Response(status=204)

    async def verify(self, ref: str, request: web.Request, config: dict[str, Any]) -> web.StreamResponse:
        self._limit(ref, "verify", config.get("rate_limit_verify"), 300, request)
        if request.method == "GET":
            token, kind = request.query.get("token", ""), request.query.get("type", "")
            redirect = request.query.get("redirect_to") or config.get("site_url") or self.project_url(ref)
        else:
            body = await self._body(request)
            token = str(body.get("token_hash") or body.get("token") or "")
            kind, redirect = str(body.get("type") or ""), ""
        if kind not in ("signup", "email"):
            raise AuthError(501, "not_implemented", f"verification of type {kind or '(none)'!r} is not built on this platform")
        pool = await self.directory.pool(ref, "auth")
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            async with conn.transaction():
                cur = await conn.execute(
                    "UPDATE auth.users SET email_confirmed_at = now(), confirmation_token = '', updated_at = now() "
                    "WHERE confirmation_token = %s AND confirmation_token <> '' AND deleted_at IS NULL "
                    "AND confirmation_sent_at > now() - make_interval(secs => %s) RETURNING id",
                    (_hash_token(token), int(config.get("mailer_otp_exp") or 86400)))
                found = await cur.fetchone()
            if found is None:
                if request.method == "GET":
                    return _see_other(redirect + "#" + urlencode({
                        "error": "access_denied", "error_code": "otp_expired",
                        "error_description": "Email link is invalid or has expired"}, quote_via=quote))
                raise AuthError(403, "otp_expired", "Token has expired or is invalid")
            user = await self._user_row(conn, user_id=str(found["id"]))
            await conn.execute("UPDATE auth.identities SET identity_data = identity_data || '{\"email_verified\": true}' "
                               "WHERE user_id = %s AND provider = 'email'", (found["id"],))
            assert user is not None
            session = await self._issue_session(ref, conn, user, config, request, method="otp")
        if request.method == "GET":
            fragment = urlencode({"access_token": session["access_token"], "expires_at": session["expires_at"],
                                  "expires_in": session["expires_in"], "refresh_token": session["refresh_token"],
                                  "token_type": "bearer", "type": kind}, quote_via=quote)
            return _see_other(f"{redirect}#{fragment}")
        return json_response(200, session)

    # -- admin ---------------------------------------------------------------------------------
    async def admin(self, ref: str, request: web.Request, path: str, config: dict[str, Any]) -> web.Response:
        await self._admin_caller(ref, request)
        parts = path.split("/")[3:]  # after /admin/users
        m = request.method
        if len(parts) > 1:
            if parts[1] == "factors":
                raise AuthError(501, "not_implemented", f"{NOT_BUILT['admin/factors']} is not built on this platform")
            raise AuthError(404, "not_found", f"no Auth route {m} {path}")
        pool = await self.directory.pool(ref, "auth")
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            if not parts:
                if m == "GET":
                    return await self._admin_list(conn, request)
                if m == "POST":
                    return await self._admin_create(conn, request, config)
                raise AuthError(405, "method_not_allowed", f"{m} not allowed")
            user_id = parts[0]
            if m == "GET":
                return json_response(200, await self._user_view_by_id(conn, user_id))
            if m == "PUT":
                return await self._admin_update(conn, user_id, request, config)
            if m == "DELETE":
                view = await self._user_view_by_id(conn, user_id)
                await conn.execute("DELETE FROM auth.users WHERE id = %s", (user_id,))
                return json_response(200, view)
        raise AuthError(405, "method_not_allowed", f"{m} not allowed")

    async def _user_view_by_id(self, conn: Any, user_id: str) -> dict[str, Any]:
        row = await self._user_row(conn, user_id=user_id)
        if row is None:
            raise AuthError(404, "user_not_found", "User not found")
        return self._user_view(row, await self._identities(conn, row["id"]))

    async def _admin_list(self, conn: Any, request: web.Request) -> web.Response:
        try:
            page = max(int(request.query.get("page") or "1"), 1)
            per_page = min(max(int(request.query.get("per_page") or "50"), 1), 1000)
        except ValueError:
            raise AuthError(400, "validation_failed", "page and per_page must be integers") from None
        total = (await (await conn.execute("SELECT count(*) AS n FROM auth.users WHERE deleted_at IS NULL")).fetchone())["n"]
        cur = await conn.execute(f"SELECT {USER_COLUMNS} FROM auth.users WHERE deleted_at IS NULL "
                                 "ORDER BY created_at DESC, id LIMIT %s OFFSET %s", (per_page, (page - 1) * per_page))
        rows = await cur.fetchall()
        users = [self._user_view(r, await self._identities(conn, r["id"])) for r in rows]
        last = max((total + per_page - 1) // per_page, 1)
        links = [f'</admin/users?page={last}&per_page={per_page}>; rel="last"']
        if page < last:
            links.insert(0, f'</admin/users?page={page + 1}&per_page={per_page}>; rel="next"')
        return json_response(200, {"users": users, "aud": "authenticated"},
                             headers={"X-Total-Count": str(total), "Link": ", ".join(links)})

    async def _admin_create(self, conn: Any, request: web.Request, config: dict[str, Any]) -> web.Response:
        body = await self._body(request)
        if body.get("phone") and not body.get("email"):
            raise AuthError(501, "not_implemented", "phone users (SMS) are not built on this platform")
        email = self._check_email(body.get("email"))
        password = self._check_password(body["password"], config) if body.get("password") is not None else None
        role = body.get("role") or "authenticated"
        if not isinstance(role, str) or not re.match(r"^[a-z_][a-z0-9_]{0,62}$", role):
            raise AuthError(400, "validation_failed", "role must be a role name")
        user = await self._create_user(conn, email=email, password=password,
                                       user_meta=self._meta(body.get("user_metadata"), "user_metadata"),
                                       app_meta=self._meta(body.get("app_metadata"), "app_metadata"),
                                       confirmed=bool(body.get("email_confirm")), confirmation_hash=None, role=role)
        return json_response(200, self._user_view(user, await self._identities(conn, user["id"])))

    async def _admin_update(self, conn: Any, user_id: str, request: web.Request, config: dict[str, Any]) -> web.Response:
        body = await self._body(request)
        async with conn.transaction():
            user = await self._user_row(conn, user_id=user_id, lock=True)
            if user is None:
                raise AuthError(404, "user_not_found", "User not found")
            if body.get("password") is not None:
                hashed = await asyncio.to_thread(hash_password, self._check_password(body["password"], config))
                await conn.execute("UPDATE auth.users SET encrypted_password = %s WHERE id = %s", (hashed, user_id))
            if body.get("email") is not None:
                email = self._check_email(body["email"])
                if email != user["email"]:
                    await self._set_email(conn, user["id"], email)
            if body.get("email_confirm") is True:
                await conn.execute("UPDATE auth.users SET email_confirmed_at = coalesce(email_confirmed_at, now()) "
                                   "WHERE id = %s", (user_id,))
            if "user_metadata" in body:
                await conn.execute("UPDATE auth.users SET raw_user_meta_data = coalesce(raw_user_meta_data, '{}') || %s::jsonb "
                                   "WHERE id = %s", (json.dumps(self._meta(body["user_metadata"], "user_metadata")), user_id))
            if "app_metadata" in body:
                await conn.execute("UPDATE auth.users SET raw_app_meta_data = coalesce(raw_app_meta_data, '{}') || %s::jsonb "
                                   "WHERE id = %s", (json.dumps(self._meta(body["app_metadata"], "app_metadata")), user_id))
            if "ban_duration" in body:
                duration = body["ban_duration"]
                if duration == "none":
                    await conn.execute("UPDATE auth.users SET banned_until = NULL WHERE id = %s", (user_id,))
                else:
                    seconds = _duration_s(duration)
                    await conn.execute("UPDATE auth.users SET banned_until = now() + make_interval(secs => %s) "
                                       "WHERE id = %s", (seconds, user_id))
                    await conn.execute("DELETE FROM auth.sessions WHERE user_id = %s", (user_id,))
            await conn.execute("UPDATE auth.users SET updated_at = now() WHERE id = %s", (user_id,))
        return json_response(200, await self._user_view_by_id(conn, user_id))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _ip(request: web.Request) -> str | None:
    raw = (request.headers.get("X-Forwarded-For") or request.remote or "").split(",")[0].strip()
    return raw if re.match(r"^[0-9a-fA-F:.]+$", raw) else None


def _duration_s(value: Any) -> float:
    """A Go duration as GoTrue's ban_duration takes it: 24h, 90m, 1h30m, 10s."""
    if not isinstance(value, str):
        raise AuthError(400, "validation_failed", "ban_duration must be a duration like 24h or none")
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise AuthError(400, "validation_failed", "ban_duration must be a duration like 24h or none")
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)
