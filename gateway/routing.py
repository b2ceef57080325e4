"""The gateway's route table: each route with what the OpenAPI document needs to know.

Handlers register themselves with `@route(...)`; `url_map()` builds werkzeug's map and
`gateway/openapi.py` builds the document from the same list, so docs cannot drift.
A handler is called as `handler(gateway, request, ctx, **path_args)`: a Gateway method, or
a plain function in one of the route modules listed in gateway/app.py (ROUTE_MODULES).
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
