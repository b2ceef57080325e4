"""The web dashboard, served by the gateway: the HTML entry for every page route, the static
files of web/ under /assets/, and the one JSON route the dashboard needs that the other
route modules do not have (your permissions in an organization, to grey out buttons).

The dashboard is plain ES modules and CSS, no build step: web/ is served as it is. Page routes
all answer the same HTML; the browser-side router (web/js/router.js) picks the page. HTML and
asset routes carry tag "web" and stay out of the OpenAPI document (they are not API).
"""

from __future__ import annotations

import hashlib
import mimetypes
from urllib.parse import urlsplit
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields
from werkzeug.security import safe_join
from werkzeug.wrappers import Request, Response

from .app import json_response
from .errors import HttpError
from .routing import route

WEB_ROOT = Path(__file__).resolve().parents[1] / "web"
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html",
         ".json": "application/json", ".png": "image/png", ".woff2": "font/woff2"}
# Everything the dashboard loads comes from this origin; nothing inline, nothing from elsewhere.
# It connects to one other place: the project edge (the Realtime inspector's websocket), which
# is the projects' own origin, never a platform one.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'{edge}; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'{frames}")


def edge_sources(settings: Any) -> str:
    """The project edge's origins for connect-src: its public URL (and every <ref>.<domain>
    with host routing), over HTTP and websockets."""
    if settings is None:
        return ""
    parts = urlsplit(settings.edge_public_url)
    secure = parts.scheme == "https"
    hosts = [parts.netloc] if parts.netloc else []
    if settings.edge_domain:
        port = f":{parts.port}" if parts.port else ""
        hosts.append(f"*.{settings.edge_domain}{port}")
    out = []
    for host in hosts:
        out += [f"{'https' if secure else 'http'}://{host}", f"{'wss' if secure else 'ws'}://{host}"]
    return "".join(f" {o}" for o in out)


def frame_sources(settings: Any) -> str:
    """The one thing the dashboard frames: a project's Studio on the Studio origin (kubernetes
    driver, docs/studio.md), reached through the dashboard's own bridge route."""
    from .studio import studio_origin
    from .studio_proxy import enabled

    if settings is None or not enabled(settings):
        return ""
    return f"; frame-src 'self' {studio_origin(settings)}"


def _security_headers(response: Response, settings: Any = None) -> Response:
    response.headers["Content-Security-Policy"] = CSP.format(edge=edge_sources(settings), frames=frame_sources(settings))
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Invitation links carry their token in the query string: never send it on as a referrer.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _file_response(request: Request, path: Path, settings: Any = None) -> Response:
    data = path.read_bytes()
    etag = hashlib.sha256(data).hexdigest()[:32]
    mimetype = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = Response(data, mimetype=mimetype)
    response.set_etag(etag)
    # Revalidate every time (cheap with the ETag): a deploy shows up at once, no stale mix of modules.
    response.headers["Cache-Control"] = "no-cache"
    return _security_headers(response, settings)


def _page(gw: Any, request: Request) -> Response:
    return _file_response(request, WEB_ROOT / "index.html", gw.settings)


# ---- pages (each answers the dashboard's HTML; the browser-side router draws the page) ----------

@route("GET", "/", summary="Dashboard", tag="web", auth=False)
def web_home(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    return _page(gw, request)


@route("GET", "/sign-in", summary="Dashboard: sign in", tag="web", auth=False)
def web_sign_in(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    return _page(gw, request)


@route("GET", "/sign-up", summary="Dashboard: sign up", tag="web", auth=False)
def web_sign_up(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    return _page(gw, request)


@route("GET", "/verify-email", summary="Dashboard: confirm an email address (the link in the mail)",
       tag="web", auth=False)
def web_verify_email(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    return _page(gw, request)


@route("GET", "/invitations/accept", summary="Dashboard: accept an invitation (the link in the mail)",
       tag="web", auth=False)
def web_accept_invitation(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    return _page(gw, request)


@route("GET", "/new-org", summary="Dashboard: create an organization", tag="web", auth=False)
def web_new_org(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    return _page(gw, request)


@route("GET", "/account", summary="Dashboard: your account", tag="web", auth=False)
def web_account(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    return _page(gw, request)


@route("GET", "/account/<path:rest>", summary="Dashboard: your account", tag="web", auth=False)
def web_account_pages(gw: Any, request: Request, ctx: dict[str, Any], rest: str) -> Response:
    return _page(gw, request)


@route("GET", "/org/<path:rest>", summary="Dashboard: an organization", tag="web", auth=False)
def web_org_pages(gw: Any, request: Request, ctx: dict[str, Any], rest: str) -> Response:
    return _page(gw, request)


@route("GET", "/project/<path:rest>", summary="Dashboard: a project", tag="web", auth=False)
def web_project_pages(gw: Any, request: Request, ctx: dict[str, Any], rest: str) -> Response:
    return _page(gw, request)


@route("GET", "/admin", summary="Admin panel", tag="web", auth=False)
def web_admin(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    return _page(gw, request)


@route("GET", "/admin/<path:rest>", summary="Admin panel", tag="web", auth=False)
def web_admin_pages(gw: Any, request: Request, ctx: dict[str, Any], rest: str) -> Response:
    return _page(gw, request)


@route("GET", "/assets/<path:name>", summary="The dashboard's static files (web/)", tag="web", auth=False)
def web_asset(gw: Any, request: Request, ctx: dict[str, Any], name: str) -> Response:
    joined = safe_join(str(WEB_ROOT), name)
    if joined is None or name.startswith(".") or "/." in name or not Path(joined).is_file():
        raise HttpError(404, f"no asset {name}")
    return _file_response(request, Path(joined), gw.settings)


# ---- JSON for the dashboard -----------------------------------------------------------------------

class OrgPermissions(Schema):
    role = fields.String(required=True, metadata={"description": "Your role in the organization"})
    actions = fields.List(fields.String(), required=True,
                          metadata={"description": "What your role allows (names from docs/permissions.md)"})


@route("GET", "/platform/organizations/<slug>/permissions",
       summary="What your role in the organization allows (the dashboard greys out the rest)",
       tag="organizations", response=OrgPermissions)
def org_permissions(gw: Any, request: Request, ctx: dict[str, Any], slug: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(OrgPermissions().dump(gw.services.orgs.permissions_in(me.id, slug)))
