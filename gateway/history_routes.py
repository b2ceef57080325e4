"""Admin panel API for time travel: an aggregate's timeline and its state at any point.

Platform admins only (asked of orgs here, and again by the service). Each kind's history is
answered by the service that keeps it (the `history` RPC every producing service has).
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields
from werkzeug.wrappers import Request, Response

from services.shared.history import KINDS, NOT_EVENT_SOURCED

from .admin_routes import _admin
from .app import json_response
from .errors import HttpError
from .routing import route

Ctx = dict[str, Any]


class HistoryEvent(Schema):
    version = fields.Integer(required=True)
    position = fields.Integer(allow_none=True, metadata={"description": "the producer's log position"})
    time = fields.String(required=True)
    event = fields.String(required=True, metadata={"description": "the stored domain event's class"})
    actor = fields.String(allow_none=True, metadata={"description": "who: a user id, platformctl, or system"})
    correlation_id = fields.String(allow_none=True, metadata={"description": "the request it came from"})
    causation_id = fields.String(allow_none=True)


class AdminHistory(Schema):
    kind = fields.String(required=True)
    key = fields.String(required=True)
    at = fields.String(required=True)
    version = fields.Integer(required=True, metadata={"description": "the aggregate's version at that point"})
    head = fields.Integer(required=True, metadata={"description": "its newest version"})
    state = fields.Dict(required=True, metadata={"description": "its state then (secrets as references)"})
    events = fields.List(fields.Nested(HistoryEvent), required=True)


@route("GET", "/platform/admin/history/<kind>", summary="An aggregate's timeline and its state at a time or log "
       "position (platform admins)", tag="admin", response=AdminHistory,
       query={"id": "its natural key (org slug, project ref, ref/slug, operation id) or aggregate id",
              "at": "an ISO time or a log position (default: now)"})
def admin_history(gw: Any, request: Request, ctx: Ctx, kind: str) -> Response:
    me = _admin(gw, request, ctx)
    key = request.args.get("id", "").strip()
    if not key:
        raise HttpError.invalid({"id": ["give the aggregate's key"]})
    if kind not in KINDS:
        why = NOT_EVENT_SOURCED.get(kind, f"one of: {', '.join(KINDS)}")
        raise HttpError.invalid({"kind": [why]})
    at = request.args.get("at") or None
    found = getattr(gw.services, KINDS[kind].producer).history(me.id, kind, key, at)
    return json_response(AdminHistory().dump(found))
