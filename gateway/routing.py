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


ROUTES: list[RouteSpec] = []


def route(method: str, path: str, *, summary: str, tag: str, body: type[Schema] | None = None,
          response: type[Schema] | None = None, many: bool = False, status: int = 200, auth: bool = True,
          query: dict[str, str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if any(r.endpoint == fn.__name__ for r in ROUTES):
            raise RuntimeError(f"two routes named {fn.__name__}")
        ROUTES.append(RouteSpec(method, path, fn.__name__, summary, tag, body, response, many, status, auth,
                                query or {}, fn))
        return fn

    return register


def url_map() -> Map:
    return Map([Rule(r.path, methods=[r.method], endpoint=r.endpoint) for r in ROUTES], strict_slashes=False)
