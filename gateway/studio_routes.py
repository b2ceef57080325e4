"""The Studio bridge's two routes (gateway/studio.py, docs/studio.md): the dashboard's
`/platform/projects/<ref>/studio` (members only: a one-time code, then a redirect to the
Studio origin) and the Studio origin's `/studio/auth` (the code for a host-only cookie)."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from . import studio, studio_proxy
from .errors import HttpError
from .routing import Call, endpoint, route


@endpoint("GET", "/platform/projects/<ref>/studio",
          summary="Open the project's database pages on its Studio origin: a one-time code (60 s, single use, "
                  "bound to you and this project), then a 303 redirect there", tag="projects", scope="project",
          query={"page": "the database page to land on (default: database; e.g. database/sql)"}, status=303)
def open_studio(call: Call) -> Any:
    if call.gateway.studio is None:
        raise HttpError(503, "the Studio bridge is not available")
    ref = call.args["ref"]
    project = call.project or {}
    call.services.orgs.authorize(call.me.id, project["organization_slug"], "database.read")
    code = call.gateway.studio.issue(call.me.id, ref, studio.next_path(ref, call.query.get("page")))
    return Response(status=303, headers={"Location": studio.open_url(call.settings, code),
                                         "Referrer-Policy": "no-referrer"})


@route("GET", "/studio/auth", summary="Studio origin: trade a one-time code for this origin's cookie", tag="web",
       auth=False)
def studio_auth(gw: Any, request: Request, ctx: dict[str, Any]) -> Response:
    code = request.args.get("code") or ""
    found = gw.studio.exchange(code) if code and len(code) <= 128 and gw.studio is not None else None
    if found is None:
        raise HttpError(400, "this Studio link was already used or has expired: open Studio again from the dashboard")
    token, session, next_path = found
    old = request.cookies.get(studio.STUDIO_COOKIE)
    if old:
        gw.studio.delete(old)  # one Studio session per browser: the new project's replaces the old one
    if studio_proxy.enabled(gw.settings):
        # Kubernetes: the project's own Studio, started now if idle (its address cached briefly).
        studio_proxy.upstream(gw, session.ref)
        next_path = studio_proxy.landing(next_path)
    return studio.cookie_response(gw.settings, token, next_path)
