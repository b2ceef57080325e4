"""Contracts published by the realtime service (exchange `realtime.events`): a project's
realtime settings changed, and a shutdown of its realtime connections was asked for."""

from marshmallow import Schema, fields, validate

from .registry import contract

REF = validate.Regexp(r"^[a-z]{20}$")
SETTING = fields.Raw(metadata={"description": "a boolean or an integer, as in UpdateRealtimeConfigBody"})


@contract("realtime_config_changed", 1, "realtime",
          "A project's realtime settings changed (`PATCH /v1/projects/{ref}/config/realtime`): only the fields "
          "that changed, with their previous values and who changed them.")
class RealtimeConfigChangedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    changes = fields.Dict(keys=fields.String(), values=SETTING, required=True,
                          metadata={"description": "setting name -> new value (spec field names)"})
    previous = fields.Dict(keys=fields.String(), values=SETTING, required=True,
                           metadata={"description": "setting name -> the value before"})
    version = fields.Integer(required=True, validate=validate.Range(min=1),
                             metadata={"description": "Version of the project's realtime settings after the change"})
    changed_by = fields.String(required=True, allow_none=True, metadata={"description": "User id of who changed them"})
    at = fields.AwareDateTime(required=True, format="iso")


@contract("realtime_shutdown_requested", 1, "realtime",
          "Every realtime client of the project is to be disconnected now "
          "(`POST /v1/projects/{ref}/config/realtime/shutdown`); clients may connect again.")
class RealtimeShutdownRequestedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    seq = fields.Integer(required=True, validate=validate.Range(min=1),
                         metadata={"description": "The project's shutdowns so far, this one included"})
    requested_by = fields.String(required=True, allow_none=True)
    at = fields.AwareDateTime(required=True, format="iso")
