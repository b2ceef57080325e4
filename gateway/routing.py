"""The gateway's route table: each route with what the OpenAPI document needs to know.

Two ways to register, one table: `url_map()` builds werkzeug's map and `gateway/openapi.py`
builds the document from the same list, so docs cannot drift.

- `@endpoint(...)` (the way for new routes): the route declares its scope (`org`, `project`
  or none), who may call it (`user`, `admin`, `anyone`), its body and response schemas and
  its status; the gateway authenticates, authorises, loads and dumps, and the handler is
  `(call) -> data` (see `Call`). gateway/projects_routes.py is written this way.
- `@route(...)` (the older way, still working while routes move over): the handler is
  called as `handler(gateway, request, ctx, **path_args)` and loads and dumps itself; scope
  and who are declared the same way (unset, scope follows from a <slug>/<ref> in the path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from marshmallow import Schema
from werkzeug.routing import Map, Rule


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str  # werkzeug rule, e.g. /v1/organizations/<slug>
    endpoint: str
    summary: str
    tag: str
    body: type[Schema] | None = None
    response: type[Schema] | None = None
    many: bool = False
    status: int = 200
    auth: bool = True
    query: dict[str, str] = field(default_factory=dict)
    handler: Callable[..., Any] | None = None
    # What the route is about: "org" (a <slug> of an organization the caller must belong to),
    # "project" (a <ref> of a project in one of the caller's organizations) or None. Left
    # unset, it follows from the path: an authenticated route with <slug> or <ref>.
    scope: str | None = None
    # Who may call it: "user" (signed in), "admin" (a platform admin: no membership needed,
    # any organization's <slug>/<ref>) or "anyone".
    who: str = "user"


SCOPES = ("org", "project", None)
WHO = ("user", "admin", "anyone")
_UNSET: Any = object()


def default_scope(path: str, who: str) -> str | None:
    if who != "user":
        return None
    if "<ref>" in path:
        return "project"
    if "<slug>" in path:
        return "org"
    return None


ROUTES: list[RouteSpec] = []


def route(method: str, path: str, *, summary: str, tag: str, body: type[Schema] | None = None,
          response: type[Schema] | None = None, many: bool = False, status: int = 200, auth: bool = True,
          query: dict[str, str] | None = None, scope: str | None = _UNSET,
          who: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    who = who or ("user" if auth else "anyone")
    if who not in WHO:
        raise ValueError(f"who: one of {WHO}")
    auth = who != "anyone"
    scope = default_scope(path, who) if scope is _UNSET else scope
    if scope not in SCOPES:
        raise ValueError(f"scope: one of {SCOPES}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if any(r.endpoint == fn.__name__ for r in ROUTES):
            raise RuntimeError(f"two routes named {fn.__name__}")
        ROUTES.append(RouteSpec(method, path, fn.__name__, summary, tag, body, response, many, status, auth,
                                query or {}, fn, scope, who))
        return fn

    return register


def url_map() -> Map:
    return Map([Rule(r.path, methods=[r.method], endpoint=r.endpoint) for r in ROUTES], strict_slashes=False)


# ---- declared routes: the handler gets one Call and returns data ------------------------------

@dataclass
class Call:
    """Everything a declared route's handler needs, prepared by the gateway: the caller
    (authenticated; a member of the route's organization or project, or a platform admin,
    as the route declared), the loaded body, the path arguments, the project of a project
    route, and the services."""

    gateway: Any
    request: Any
    ctx: dict[str, Any]
    args: dict[str, Any]
    me: Any = None
    body: dict[str, Any] | None = None
    project: dict[str, Any] | None = None

    @property
    def services(self) -> Any:
        return self.gateway.services

    @property
    def settings(self) -> Any:
        return self.gateway.settings

    @property
    def query(self) -> Any:
        return self.request.args


def endpoint(method: str, path: str, *, summary: str, tag: str, scope: str | None = _UNSET, who: str = "user",
             body: type[Schema] | None = None, response: type[Schema] | None = None, many: bool = False,
             status: int = 200, query: dict[str, str] | None = None) -> Callable[[Callable[[Call], Any]], Callable[..., Any]]:
    """Declare a route whose handler is `(call) -> data`. The gateway authenticates and
    authorises (scope, who) before it runs, loads `body` (400 with the fields' errors), and
    dumps what it returns with `response` (`many`) under `status` (204: no body). A handler
    may still return a werkzeug Response for what a schema cannot say (cookies, files)."""

    def register(fn: Callable[[Call], Any]) -> Callable[..., Any]:
        def handler(gw: Any, request: Any, ctx: dict[str, Any], **args: Any) -> Any:
            from .app import json_response  # the plumbing module imports this one

            call = Call(gw, request, ctx, args)
            if who != "anyone":
                call.me = gw.caller(request, ctx)
            if request.environ.get("sp.project") is not None:
                call.project = request.environ["sp.project"]
            if body is not None:
                call.body = gw.body(request, body)
            data = fn(call)
            if hasattr(data, "status_code") and hasattr(data, "headers"):
                return data
            if status == 204 or response is None:
                return json_response(None if status == 204 else data, status)
            return json_response(response(many=many).dump(data), status)

        handler.__name__ = fn.__name__
        handler.__doc__ = fn.__doc__
        route(method, path, summary=summary, tag=tag, body=body, response=response, many=many, status=status,
              query=query, scope=scope, who=who)(handler)
        return handler

    return register
