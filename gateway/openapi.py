"""The gateway's OpenAPI 3.1 document, generated from the route table and its marshmallow
schemas. `python -m gateway.openapi` writes docs/api/gateway-openapi.json; `--check` fails
when that file is stale. The gateway also serves it at /platform/openapi.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from marshmallow import Schema

from services.shared.contracts.export import schema_to_json

from . import app as _app  # registers the routes
from . import schemas
from .routing import ROUTES

OUT = Path(__file__).resolve().parents[1] / "docs" / "api" / "gateway-openapi.json"
STATUS_TEXT = {200: "OK", 201: "Created", 204: "No content", 303: "See other: a redirect (Location)"}
ERRORS = {400: "Invalid input (see errors per field)", 401: "Not signed in / bad token",
          402: "Past a limit of the organization's plan",
          403: "Not allowed for your role, or missing CSRF token", 404: "Not found (or not yours)",
          409: "Conflicts with current state", 410: "No longer usable (expired, revoked, used)",
          413: "Request body too large (the route's limit)", 415: "Wrong content type for this body",
          429: "Too many attempts (see Retry-After)",
          503: "A dependency (database, broker, a service) is down; the reason says which (see Retry-After)"}
LIMITED = {"signup", "signin"}  # unauthenticated routes under an abuse limit (gateway/ratelimit.py)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Statuses a route answers beyond what the general rules in document() give it.
MORE_ERRORS: dict[str, list[int]] = {
    "signin": [401],  # wrong email or password
    "signup": [409],  # the email is already registered
    # LimitExceeded: past the plan's active projects
    "v1_create_project": [402], "v1_restore_project": [402], "admin_restore_project": [402],
    "billing_change_plan": [402],
    # Gone: an invitation used, revoked or expired, or its organization deleted
    "get_invitation": [410], "accept_invitation": [410],
    "v1_deploy_function": [415],  # not multipart/form-data
}


def _ref(schema: type[Schema], components: dict[str, Any]) -> dict[str, Any]:
    name = schema.__name__
    if name not in components:
        components[name] = schema_to_json(schema)
    return {"$ref": f"#/components/schemas/{name}"}


def document() -> dict[str, Any]:
    _app._load_routes()
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    error_ref = _ref(schemas.Error, components)
    for r in ROUTES:
        if r.tag == "web":
            continue  # the dashboard's HTML pages and static files: not API
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.path)
        op: dict[str, Any] = {"operationId": r.endpoint, "summary": r.summary, "tags": [r.tag]}
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in re.findall(r"{(\w+)}", path)]
        params += [{"name": q, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
                   for q, d in r.query.items()]
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(r.body, components)}}}
        ok: dict[str, Any] = {"description": STATUS_TEXT.get(r.status, "OK")}
        if r.response is not None:
            ref = _ref(r.response, components)
            ok["content"] = {"application/json": {"schema": {"type": "array", "items": ref} if r.many else ref}}
        responses: dict[str, Any] = {str(r.status): ok}
        codes = list(MORE_ERRORS.get(r.endpoint, []))
        if r.body is not None or r.query or "{" in path or r.method in UNSAFE:
            # Any input can be refused: a body (declared or read by the handler), a query
            # string, a path argument (gateway/paths.py refuses encoded separators).
            codes += [400]
        if r.body is not None or r.method in UNSAFE:
            codes += [413]  # gateway/limits.py: refused from Content-Length, before it is read
        if r.auth:
            codes += [401, 403, 404]
        elif "{" in path:
            codes += [404]
        if r.auth and r.method in UNSAFE:
            codes += [409]  # a change the current state does not allow (services' Conflict)
        if r.auth or r.endpoint in LIMITED:
            codes += [429]  # a limited action, or failed bearer tokens from the caller's IP
        if r.auth:
            codes += [503]
        for code in sorted(set(codes)):
            responses[str(code)] = {"description": ERRORS[code],
                                    "content": {"application/json": {"schema": error_ref}}}
        op["responses"] = responses
        op["security"] = [{"bearer": []}, {"session": []}] if r.auth else []
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Supaplatform gateway API",
            "version": "1",
            "description": "Management API v1 subset (per Supabase's public spec) and the platform routes "
                           "for what v1 lacks. Authenticate with a personal access token (Bearer sbp_...) or "
                           "a session cookie; cookie requests that change state need X-CSRF-Token.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Personal access token sbp_..."},
                "session": {"type": "apiKey", "in": "cookie", "name": "sp_session"},
            },
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file on disk is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python -m gateway.openapi", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
