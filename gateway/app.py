"""The gateway's HTTP application: routing, authentication, validation, error mapping.

Framework-free apart from werkzeug: `Gateway(services).handle(request)` returns a
Response. `services` is anything with `.orgs`, `.billing` … attributes whose methods are
the services' RPC methods (nameko proxies in production, in-process objects in tests).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable

from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import schemas
from .errors import HttpError, from_remote

log = logging.getLogger("gateway")

MAX_BODY = 1024 * 1024


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


class Gateway:
    def __init__(self, services: Any):
        self.services = services
        self.url_map = Map(
            [
                Rule("/v1/organizations", methods=["GET"], endpoint="list_organizations"),
                Rule("/v1/organizations", methods=["POST"], endpoint="create_organization"),
                Rule("/v1/organizations/<slug>", methods=["GET"], endpoint="get_organization"),
                Rule("/health", methods=["GET"], endpoint="health"),
            ],
            strict_slashes=False,
        )

    # -- plumbing ----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
            handler: Callable[..., Response] = getattr(self, endpoint)
            response = handler(request, ctx={"correlation_id": request_id, "causation_id": request_id}, **args)
        except HttpError as e:
            response = error_response(e.status, e.message)
        except MethodNotAllowed:
            response = error_response(405, f"method {request.method} not allowed on {request.path}")
        except NotFound:
            response = error_response(404, f"no route for {request.path}")
        except HTTPException as e:
            response = error_response(e.code or 500, e.description or "error")
        except Exception as e:  # noqa: BLE001 -- RPC errors and faults
            mapped = from_remote(getattr(e, "exc_type", None), getattr(e, "value", None) or str(e))
            if mapped is None:
                log.exception("unhandled error on %s %s", request.method, request.path)
                response = error_response(500, "internal error")
            else:
                response = error_response(mapped.status, mapped.message)
        response.headers["X-Request-Id"] = request_id
        return response

    def body(self, request: Request, schema: type[Schema]) -> dict[str, Any]:
        if request.content_length and request.content_length > MAX_BODY:
            raise HttpError(413, "request body too large")
        raw = request.get_data(cache=False, as_text=False)
        try:
            data = json.loads(raw or b"null")
        except ValueError as e:
            raise HttpError(400, f"malformed JSON: {e}") from None
        if not isinstance(data, dict):
            raise HttpError(400, "request body must be a JSON object")
        try:
            return schema().load(data)
        except ValidationError as e:
            raise HttpError(400, _flatten(e.messages)) from None

    def user(self, request: Request) -> dict[str, Any]:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, "missing bearer token (Authorization: Bearer sbp_...)")
        return self.services.orgs.authenticate_token(token.strip())

    # -- routes --------------------------------------------------------------------------------
    def health(self, request: Request, ctx: dict[str, Any]) -> Response:
        return json_response({"status": "ok"})

    def list_organizations(self, request: Request, ctx: dict[str, Any]) -> Response:
        user = self.user(request)
        orgs = self.services.orgs.list_organizations(user["id"])
        return json_response(schemas.OrganizationResponseV1(many=True).dump(orgs))

    def create_organization(self, request: Request, ctx: dict[str, Any]) -> Response:
        user = self.user(request)
        data = self.body(request, schemas.CreateOrganizationV1)
        org = self.services.orgs.create_organization(user["id"], data["name"], {**ctx, "actor": user["id"]})
        return json_response(schemas.OrganizationResponseV1().dump(org), 201)

    def get_organization(self, request: Request, ctx: dict[str, Any], slug: str) -> Response:
        user = self.user(request)
        org = self.services.orgs.get_organization(user["id"], slug)
        out: dict[str, Any] = {"id": org["slug"], "name": org["name"], "opt_in_tags": [],
                               "allowed_release_channels": ["ga"]}
        try:
            out["plan"] = self.services.billing.get_subscription(slug)["plan"]
        except Exception as e:  # noqa: BLE001 -- billing may not have seen the org yet
            if getattr(e, "exc_type", None) != "NotFound":
                raise
        return json_response(schemas.V1OrganizationSlugResponse().dump(out))


def _flatten(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        parts = [_flatten(v, f"{prefix}{k}.") for k, v in messages.items()]
        return "; ".join(parts)
    if isinstance(messages, list):
        return f"{prefix.rstrip('.')}: " + " ".join(str(m) for m in messages)
    return f"{prefix.rstrip('.')}: {messages}"
