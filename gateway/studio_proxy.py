"""The Studio bridge's proxy (docs/studio.md), on the kubernetes driver: a Studio session's
requests on the Studio origin go to that project's own self-hosted Supabase Studio (the URL
the provisioner's `studio_upstream` answers, cached briefly), after the bridge's checks on
every request: the Studio cookie for that project, membership and role asked again, and
writes (any method but GET/HEAD) only for roles with `database.write`. The read-only role's
SQL (a POST to Studio's pg-meta query path) never reaches Studio: the bridge answers it with
the platform's read-only SQL (the database service, a read-only transaction).

What goes upstream carries no platform cookie, token or CSRF header; what comes back sets no
platform cookie, and its framing rules are rewritten so that the dashboard's origin alone may
embed it. Bodies are streamed both ways.

Imports the standard library, requests, werkzeug and the gateway's plumbing."""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests
from werkzeug.wrappers import Request, Response

from . import studio
from .errors import HttpError
from .limits import json_body, load_object

UPSTREAM_TTL_S = 30.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
CHUNK = 64 * 1024
MAX_SQL_BODY = 256 * 1024
PLATFORM_COOKIE = re.compile(r"^sp_", re.IGNORECASE)  # every platform cookie is sp_… (sp_session, sp_studio)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "proxy-connection"}
# Never sent upstream: the platform's credentials, and what the bridge sets itself.
REQUEST_DROP = HOP_BY_HOP | {"host", "cookie", "authorization", "x-csrf-token", "origin", "referer", "content-length",
                             "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded"}
RESPONSE_DROP = HOP_BY_HOP | {"x-frame-options", "content-security-policy", "set-cookie"}
# Studio's SQL endpoint (pg-meta's /query behind Studio's API; both spellings Studio has used).
QUERY_PATH = re.compile(r"^/api(/platform)?/pg-meta/[A-Za-z0-9_-]+/query$")
OTHER_PROJECT = re.compile(rf"^/project/{studio.REF}(/|$)")
# Where a bridge link's database page lands in Supabase Studio (self-hosted: project "default").
LANDING = {"database": "/project/default/editor", "database/sql": "/project/default/sql/new",
           "database/policies": "/project/default/auth/policies", "database/types": "/project/default/api",
           "database/schema": "/project/default/database/schemas", "database/migrations":
           "/project/default/database/migrations", "database/publications": "/project/default/database/publications"}

_upstreams: dict[str, tuple[str, float]] = {}
_lock = threading.Lock()


def enabled(settings: Any) -> bool:
    """The bridge proxies to a real Studio when tenants run on Kubernetes (one Studio each)."""
    return getattr(settings, "provisioner_driver", "local") == "kubernetes"


def landing(next_path: str) -> str:
    """The Studio page for a bridge link's `/project/<ref>/database…` path."""
    page = next_path.split("/", 3)[3] if next_path.count("/") >= 3 else "database"
    if page.startswith("database/tables"):
        page = "database"
    return LANDING.get(page, "/project/default")


def forget(ref: str) -> None:
    with _lock:
        _upstreams.pop(ref, None)


def upstream(gw: Any, ref: str, org: str = "") -> str:
    """The project's Studio URL: asked of the provisioner (which starts it if idle), kept briefly."""
    now = time.monotonic()
    with _lock:
        known = _upstreams.get(ref)
    if known is not None and known[1] > now:
        return known[0]
    url = str(gw.services.provisioner.studio_upstream(ref, org)["url"]).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(503, "this project's Studio has no usable address")
    with _lock:
        _upstreams[ref] = (url, now + UPSTREAM_TTL_S)
    return url


def same_origin(request: Request, settings: Any) -> bool:
    """Writes on the Studio origin come from its own pages: Studio's scripts cannot send the
    bridge's CSRF header, so the browser's Origin header must be the Studio origin's."""
    return (request.headers.get("Origin") or "").rstrip("/") == studio.studio_origin(settings)


def kind(request: Request) -> str:
    """'read' (GET/HEAD), 'sql' (a POST to Studio's SQL endpoint) or 'write' (anything else)."""
    if request.method in ("GET", "HEAD"):
        return "read"
    if request.method == "POST" and QUERY_PATH.match(request.path):
        return "sql"
    return "write"


def _forbidden(exc: Exception) -> bool:
    return getattr(exc, "exc_type", None) == "Forbidden"


def forward(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    """Check, then proxy one Studio-origin request to the session's project's Studio."""
    found = gw.studio_session(request)
    m = OTHER_PROJECT.match(request.path)
    if m is not None and (found is None or m.group("ref") != found[1].ref):
        raise HttpError(404, f"project {m.group('ref')} not found")
    me = gw.caller(request, ctx)  # the Studio cookie alone; 401 without one
    ref = me.studio_ref
    project = gw.services.projects.get_project(me.id, ref, me.org_slugs)  # strangers: 404
    org = project["organization_slug"]
    what = kind(request)
    if what == "read":
        gw.services.orgs.authorize(me.id, org, "database.read")
    elif what == "write":
        gw.services.orgs.authorize(me.id, org, "database.write")  # the read-only role: 403, nothing sent
    else:
        try:
            gw.services.orgs.authorize(me.id, org, "database.write")
        except Exception as e:
            if not _forbidden(e):
                raise
            return read_only_sql(gw, request, me, ref, org)
    return _proxy(gw, request, upstream(gw, ref, org))


def read_only_sql(gw: Any, request: Request, me: Any, ref: str, org: str) -> Response:
    """The read-only role's SQL from Studio: run by the platform in a read-only transaction."""
    from marshmallow import Schema, fields

    class Body(Schema):
        class Meta:
            unknown = "exclude"

        query = fields.String(required=True)

    gw.services.orgs.authorize(me.id, org, "database.read")
    data = load_object(Body(), json_body(request, MAX_SQL_BODY))
    from .app import json_response

    return json_response(gw.services.database.run_query(me.id, ref, data["query"], None, True))


def _upstream_headers(request: Request) -> dict[str, str]:
    out = {k: v for k, v in request.headers.items() if k.lower() not in REQUEST_DROP}
    cookies = "; ".join(f"{k}={v}" for k, v in request.cookies.items(multi=True) if not PLATFORM_COOKIE.match(k))
    if cookies:
        out["Cookie"] = cookies
    out.setdefault("Accept-Encoding", "identity")  # bodies pass through as encoded: only what the browser accepts
    return out


class _SizedBody:
    """The browser's body, read as it is sent on: with its length, so that it goes upstream with
    exactly one Content-Length (never also chunked)."""

    def __init__(self, stream: Any, length: int):
        self.stream, self.length = stream, length

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)  # type: ignore[no-any-return]


def _body(request: Request) -> Any:
    if request.content_length:
        return _SizedBody(request.stream, request.content_length)
    if "chunked" in (request.headers.get("Transfer-Encoding") or "").lower():
        return iter(lambda: request.stream.read(CHUNK), b"")  # chunked in, chunked on
    return None


def frame_policy(csp: str | None, dashboard: str) -> str:
    """Studio's CSP without its frame-ancestors, plus ours: the dashboard's origin only."""
    kept = [d.strip() for d in (csp or "").split(";") if d.strip() and not d.strip().lower().startswith("frame-ancestors")]
    return "; ".join(kept + [f"frame-ancestors {dashboard}"])


def _proxy(gw: Any, request: Request, base: str) -> Response:
    url = base + request.path + (f"?{request.query_string.decode('latin-1')}" if request.query_string else "")
    try:
        up = requests.request(request.method, url, headers=_upstream_headers(request),
                              data=_body(request), stream=True, allow_redirects=False,
                              timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.RequestException:
        forget(gw_ref(request))
        e = HttpError(503, "this project's Studio is starting or unreachable: try again in a few seconds")
        e.headers = {"Retry-After": "5"}  # type: ignore[attr-defined]
        raise e from None
    dashboard = gw.settings.public_url.rstrip("/")
    origin = studio.studio_origin(gw.settings)
    headers: list[tuple[str, str]] = []
    csp = None
    for k, v in up.raw.headers.items():
        low = k.lower()
        if low == "set-cookie":
            # Studio's own cookies pass, host-only on the Studio origin: never one named like a
            # platform cookie, never one for a wider Domain (the dashboard's site).
            attrs = [a.strip().lower() for a in v.split(";")[1:]]
            if not PLATFORM_COOKIE.match(v.split("=", 1)[0].strip()) and not any(a.startswith("domain") for a in attrs):
                headers.append((k, v))
            continue
        if low == "content-security-policy":
            csp = v if csp is None else f"{csp}; {v}"
            continue
        if low in RESPONSE_DROP:
            continue
        if low == "location" and v.startswith(base):
            v = origin + v[len(base):]
        headers.append((k, v))
    headers.append(("Content-Security-Policy", frame_policy(csp, dashboard)))

    def body() -> Iterator[bytes]:
        try:
            yield from up.raw.stream(CHUNK, decode_content=False)
        finally:
            up.close()

    return Response(body(), status=up.status_code, headers=headers, direct_passthrough=True)


def gw_ref(request: Request) -> str:
    found = request.environ.get("sp.studio_session")
    return found[1].ref if found else ""
