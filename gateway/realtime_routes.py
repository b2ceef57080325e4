"""Realtime routes of the gateway, declared with `@endpoint`: a project's realtime settings
(`/v1/projects/{ref}/config/realtime`, exactly as the Management API has them), the shutdown
of its realtime connections, and what the dashboard's Realtime page needs.

Membership is checked by the gateway before any input is read (scope "project"); the realtime
service checks the role (projects.manage to change) and the plan's ceilings.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from werkzeug.wrappers import Response

from services.shared.realtime_bounds import BOUNDS

from .routing import Call, endpoint
from .schemas import Strict




def _int(name: str, description: str, **kw: Any) -> fields.Integer:
    lo, hi = BOUNDS[name]
    return fields.Integer(strict=True, validate=validate.Range(min=lo, max=hi),
                          metadata={"description": description}, **kw)


class StrictBoolean(fields.Boolean):
    """Only JSON true and false (marshmallow's Boolean would take "yes", 1 or "0")."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


_DESCRIPTIONS = {
    "private_only": "Whether to only allow private channels",
    "connection_pool": "Sets connection pool size for Realtime Authorization",
    "max_concurrent_users": "Sets maximum number of concurrent users rate limit",
    "max_events_per_second": "Sets maximum number of events per second rate per channel limit",
    "max_bytes_per_second": "Sets maximum number of bytes per second rate per channel limit",
    "max_channels_per_client": "Sets maximum number of channels per client rate limit",
    "max_joins_per_second": "Sets maximum number of joins per second rate limit",
    "max_presence_events_per_second": "Sets maximum number of presence events per second rate limit",
    "max_payload_size_in_kb": "Sets maximum number of payload size in KB rate limit",
    "suspend": "Disables the Realtime service for this project when true. Set to false to re-enable it.",
    "presence_enabled": "Whether to enable presence",
}


class UpdateRealtimeConfigBody(Strict):
    private_only = StrictBoolean(metadata={"description": _DESCRIPTIONS["private_only"]})
    connection_pool = _int("connection_pool", _DESCRIPTIONS["connection_pool"])
    max_concurrent_users = _int("max_concurrent_users", _DESCRIPTIONS["max_concurrent_users"])
    max_events_per_second = _int("max_events_per_second", _DESCRIPTIONS["max_events_per_second"])
    max_bytes_per_second = _int("max_bytes_per_second", _DESCRIPTIONS["max_bytes_per_second"])
    max_channels_per_client = _int("max_channels_per_client", _DESCRIPTIONS["max_channels_per_client"])
    max_joins_per_second = _int("max_joins_per_second", _DESCRIPTIONS["max_joins_per_second"])
    max_presence_events_per_second = _int("max_presence_events_per_second",
                                          _DESCRIPTIONS["max_presence_events_per_second"])
    max_payload_size_in_kb = _int("max_payload_size_in_kb", _DESCRIPTIONS["max_payload_size_in_kb"])
    suspend = StrictBoolean(metadata={"description": _DESCRIPTIONS["suspend"]})
    presence_enabled = StrictBoolean(metadata={"description": _DESCRIPTIONS["presence_enabled"]})


class RealtimeConfigResponse(Schema):
    private_only = fields.Boolean(required=True, allow_none=True)
    connection_pool = fields.Integer(required=True, allow_none=True)
    max_concurrent_users = fields.Integer(required=True, allow_none=True)
    max_events_per_second = fields.Integer(required=True, allow_none=True)
    max_bytes_per_second = fields.Integer(required=True, allow_none=True)
    max_channels_per_client = fields.Integer(required=True, allow_none=True)
    max_joins_per_second = fields.Integer(required=True, allow_none=True)
    max_presence_events_per_second = fields.Integer(required=True, allow_none=True)
    max_payload_size_in_kb = fields.Integer(required=True, allow_none=True)
    suspend = fields.Boolean(required=True, allow_none=True)
    presence_enabled = fields.Boolean(required=True)


class RealtimeSettingsPage(Schema):
    ref = fields.String(required=True)
    plan = fields.String(required=True, allow_none=True)
    settings = fields.Nested(RealtimeConfigResponse, required=True)
    ceilings = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                           metadata={"description": "The plan's ceiling of each max_* setting (realtime.max_*)"})
    bounds = fields.Dict(keys=fields.String(), values=fields.List(fields.Integer()), required=True,
                         metadata={"description": "The API's [minimum, maximum] of each integer setting"})
    can_change = fields.Boolean(required=True, metadata={"description": "Whether the caller may change them"})
    shutdowns = fields.Integer(required=True, metadata={"description": "Shutdowns asked for so far"})


# ---- v1 ---------------------------------------------------------------------------------------

@endpoint("GET", "/v1/projects/<ref>/config/realtime", summary="Gets realtime configuration", tag="v1",
          response=RealtimeConfigResponse, scope="project")
def v1_get_realtime_config(call: Call) -> Any:
    return call.services.realtime.get_realtime_config(call.me.id, call.args["ref"])


@endpoint("PATCH", "/v1/projects/<ref>/config/realtime", summary="Updates realtime configuration", tag="v1",
          body=UpdateRealtimeConfigBody, scope="project", status=204)
def v1_update_realtime_config(call: Call) -> Any:
    call.services.realtime.update_realtime_config(call.me.id, call.args["ref"], call.body, call.ctx)
    return None


@endpoint("POST", "/v1/projects/<ref>/config/realtime/shutdown", summary="Shutdowns realtime connections for a project",
          tag="v1", scope="project", status=204)
def v1_shutdown_realtime(call: Call) -> Any:
    call.services.realtime.shutdown_realtime(call.me.id, call.args["ref"], call.ctx)
    return Response(status=204)


# ---- platform ---------------------------------------------------------------------------------

@endpoint("GET", "/platform/projects/<ref>/realtime/settings",
          summary="The project's realtime settings with the plan's ceilings and whether the caller may change them",
          tag="realtime", response=RealtimeSettingsPage, scope="project")
def realtime_settings_page(call: Call) -> Any:
    return call.services.realtime.realtime_settings_page(call.me.id, call.args["ref"])


# ---- admin panel --------------------------------------------------------------------------------

class RealtimeSlot(Schema):
    slot_name = fields.String(required=True)
    database = fields.String(required=True, allow_none=True)
    plugin = fields.String(required=True, allow_none=True)
    active = fields.Boolean(required=True)
    lag_bytes = fields.Integer(required=True, allow_none=True,
                               metadata={"description": "WAL not yet confirmed by the slot's consumer"})
    retained_bytes = fields.Integer(required=True, allow_none=True, metadata={"description": "WAL the slot holds back"})


class RealtimeOperatorProject(Schema):
    ref = fields.String(required=True)
    clients = fields.Integer(required=True)
    users = fields.Integer(required=True, metadata={"description": "Clients with a channel (what max_concurrent_users counts)"})
    channels = fields.Integer(required=True)
    joined_channels = fields.Integer(required=True)
    topics = fields.List(fields.String(), required=True)
    presence = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                           metadata={"description": "Presence entries per topic"})
    subscriptions = fields.Integer(required=True, metadata={"description": "Postgres changes subscriptions"})
    peak_clients = fields.Integer(required=True)
    slots = fields.List(fields.Nested(RealtimeSlot), required=True)
    slot_lag_bytes = fields.Integer(required=True, allow_none=True)


class RealtimeOperatorView(Schema):
    projects = fields.List(fields.Nested(RealtimeOperatorProject), required=True)
    server_error = fields.String(required=True, allow_none=True)
    other_slots = fields.List(fields.Nested(RealtimeSlot), required=True,
                              metadata={"description": "Logical slots of databases that are no project's"})


@endpoint("GET", "/platform/admin/realtime", summary="Realtime per project: live channels, clients, presence, "
          "Postgres changes subscriptions and replication-slot lag (platform admins)", tag="admin", who="admin",
          response=RealtimeOperatorView)
def admin_realtime(call: Call) -> Any:
    return call.services.realtime.operator_view(call.me.id)
