"""The Studio bridge (docs/studio.md): from the dashboard, `/platform/projects/<ref>/studio`
issues a one-time code for (user, project) and sends the browser to the project's Studio
origin, where `/studio/auth?code=…` trades it for a host-only cookie bound to that user and
project. On the Studio origin only the cookie counts (never a dashboard session or a bearer
token), only the routes in STUDIO_ROUTES answer, only for the cookie's project, and every
request is authorised again by the services (membership, then the role's action).

On the local driver the Studio origin serves the dashboard's own database pages (on the
kubernetes driver it proxies to the project's own Supabase Studio: gateway/studio_proxy.py); the origin is
`studio_public_url` (default: the gateway's port under the other loopback name, so that the
browser keeps its cookies apart without wildcard DNS).

Imports the standard library, psycopg_pool, werkzeug and the gateway's plumbing."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

from psycopg_pool import ConnectionPool
from werkzeug.wrappers import Request, Response

from .errors import HttpError

STUDIO_COOKIE = "sp_studio"
CODE_TTL = timedelta(seconds=60)
SESSION_TTL = timedelta(hours=8)
DDL = """
CREATE TABLE IF NOT EXISTS {schema}.studio_codes (
    code_hash text PRIMARY KEY, user_id text NOT NULL, ref text NOT NULL, next text NOT NULL,
    expires_at timestamptz NOT NULL, used_at timestamptz);
CREATE TABLE IF NOT EXISTS {schema}.studio_sessions (
    token_hash text PRIMARY KEY, user_id text NOT NULL, ref text NOT NULL, csrf_token text NOT NULL,
    expires_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS studio_sessions_user ON {schema}.studio_sessions (user_id);
"""
REF = r"(?P<ref>[a-z]{20})"
# (methods, path) the Studio origin answers; anything else there is a 404. `ref` must be the cookie's.
STUDIO_ROUTES: list[tuple[frozenset[str], re.Pattern[str]]] = [
    (frozenset({"GET"}), re.compile(r"^/studio/auth$")),
    (frozenset({"GET"}), re.compile(r"^/assets/[A-Za-z0-9_./-]+$")),
    (frozenset({"GET"}), re.compile(rf"^/project/{REF}/database(/.*)?$")),
    (frozenset({"GET"}), re.compile(r"^/platform/auth/session$")),
    (frozenset({"POST"}), re.compile(r"^/platform/auth/signout$")),
    (frozenset({"GET"}), re.compile(rf"^/platform/projects/{REF}$")),
    (frozenset({"GET"}), re.compile(r"^/platform/organizations/[^/]+/permissions$")),
    (frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"}), re.compile(rf"^/platform/projects/{REF}/database(/.*)?$")),
    (frozenset({"POST"}), re.compile(rf"^/v1/projects/{REF}/database/query(/read-only)?$")),
    (frozenset({"GET"}), re.compile(rf"^/v1/projects/{REF}/database/migrations$")),
    (frozenset({"GET"}), re.compile(rf"^/v1/projects/{REF}/types/typescript$")),
    (frozenset({"GET"}), re.compile(r"^/v1/projects$")),
    (frozenset({"GET"}), re.compile(r"^/v1/organizations$")),
]
PAGE = re.compile(r"^database(/[A-Za-z0-9_%.-]+)*$")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class StudioSession:
    user_id: str
    ref: str
    csrf_token: str
    expires_at: datetime


class StudioStore:
    """One-time codes and the Studio origin's sessions, in schema `gateway` (hashes only)."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def issue(self, user_id: str, ref: str, next_path: str) -> str:
        code = secrets.token_urlsafe(32)
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM gateway.studio_codes WHERE expires_at < now() - interval '1 hour'")
            conn.execute("INSERT INTO gateway.studio_codes (code_hash, user_id, ref, next, expires_at) "
                         "VALUES (%s, %s, %s, %s, %s)",
                         (_hash(code), user_id, ref, next_path, datetime.now(timezone.utc) + CODE_TTL))
        return code

    def exchange(self, code: str) -> tuple[str, StudioSession, str] | None:
        """The code's (cookie token, session, next path), once: a used, expired or unknown code is None."""
        with self.pool.connection() as conn:
            row = conn.execute("UPDATE gateway.studio_codes SET used_at = now() WHERE code_hash = %s "
                               "AND used_at IS NULL AND expires_at > now() RETURNING user_id, ref, next",
                               (_hash(code),)).fetchone()
            if row is None:
                return None
            token = secrets.token_urlsafe(32)
            session = StudioSession(row[0], row[1], secrets.token_urlsafe(24), datetime.now(timezone.utc) + SESSION_TTL)
            conn.execute("DELETE FROM gateway.studio_sessions WHERE expires_at <= now()")
            conn.execute("INSERT INTO gateway.studio_sessions (token_hash, user_id, ref, csrf_token, expires_at) "
                         "VALUES (%s, %s, %s, %s, %s)",
                         (_hash(token), session.user_id, session.ref, session.csrf_token, session.expires_at))
        return token, session, row[2]

    def get(self, token: str) -> StudioSession | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT user_id, ref, csrf_token, expires_at FROM gateway.studio_sessions "
                               "WHERE token_hash = %s AND expires_at > now()", (_hash(token),)).fetchone()
        return StudioSession(*row) if row else None

    def delete(self, token: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM gateway.studio_sessions WHERE token_hash = %s", (_hash(token),))

    def delete_user(self, user_id: str) -> None:
        """Signing out of the dashboard (or changing the password) ends the user's Studio sessions too."""
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM gateway.studio_sessions WHERE user_id = %s", (user_id,))


def studio_origin(settings: Any) -> str:
    return str(settings.studio_url()).rstrip("/")


def is_studio_request(request: Request, settings: Any) -> bool:
    host = (request.headers.get("Host") or "").lower()
    return host == urlsplit(studio_origin(settings)).netloc.lower()


def check_route(request: Request, session_ref: str | None) -> None:
    """On the Studio origin: 404 unless the route is one of STUDIO_ROUTES, for the cookie's project."""
    for methods, pattern in STUDIO_ROUTES:
        m = pattern.match(request.path)
        if m is None:
            continue
        if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
            raise HttpError(405, f"method {request.method} not allowed on {request.path}")
        ref = m.groupdict().get("ref")
        if ref is not None and session_ref is not None and ref != session_ref:
            raise HttpError(404, f"project {ref} not found")
        return
    raise HttpError(404, f"no route for {request.path} on the Studio origin")


PAGE_PATH = re.compile(rf"^/project/{REF}/(?P<page>database(/.*)?)$")


def page_ref(request: Request) -> tuple[str, str] | None:
    """(ref, page) of a Studio page request (`/project/<ref>/database/...`), else None."""
    m = PAGE_PATH.match(request.path) if request.method in ("GET", "HEAD") else None
    return (m.group("ref"), m.group("page")) if m else None


def bridge_url(settings: Any, ref: str, page: str) -> str:
    """The dashboard's bridge for this project and page (it redirects back with a code)."""
    if not PAGE.match(page) or ".." in page:
        page = "database"
    return f"{settings.public_url.rstrip('/')}/platform/projects/{ref}/studio?{urlencode({'page': page})}"


def csrf_ok(request: Request, session: StudioSession) -> bool:
    return hmac.compare_digest(request.headers.get("X-CSRF-Token", "").encode(), session.csrf_token.encode())


def open_url(settings: Any, code: str) -> str:
    return f"{studio_origin(settings)}/studio/auth?{urlencode({'code': code})}"


def next_path(ref: str, page: str | None) -> str:
    page = (page or "database").strip("/")
    if not PAGE.match(page) or ".." in page:
        raise HttpError.invalid({"page": ["a database page, e.g. database/sql"]})
    return f"/project/{ref}/{page}"


def cookie_response(settings: Any, token: str, location: str) -> Response:
    response = Response(status=303, headers={"Location": location, "Referrer-Policy": "no-referrer"})
    # Host-only (no Domain): valid on the Studio origin's host alone.
    response.set_cookie(STUDIO_COOKIE, token, httponly=True, samesite="Lax", path="/",
                        secure=studio_origin(settings).startswith("https://"),
                        max_age=int(SESSION_TTL.total_seconds()))
    return response
