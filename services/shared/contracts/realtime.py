"""Contracts published by the realtime service (exchange `realtime.events`): a project's
realtime settings changed, a shutdown of its realtime connections was asked for, and the
usage its realtime server counted (in batches)."""

from marshmallow import Schema, fields, validate

from .gateway import RecordList
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


SLUG = validate.Regexp(r"^[\w-]+$")
COUNT = validate.Range(min=0)


class RealtimeUsageRecord(Schema):
    org_id = fields.String(required=True, validate=SLUG, metadata={"description": "Slug of the project's organization"})
    project_ref = fields.String(required=True, validate=REF)
    metric = fields.String(required=True, validate=validate.OneOf(["realtime_messages", "realtime_peak_connections"]),
                           metadata={"description": "realtime_messages: messages sent to clients plus messages "
                                                    "received from them (a counter); realtime_peak_connections: the "
                                                    "most sockets connected at once in the minute (a gauge)"})
    minute = fields.Integer(required=True, validate=COUNT,
                            metadata={"description": "Epoch second (UTC) the minute started in which it was counted"})
    quantity = fields.Integer(required=True, validate=COUNT)


@contract("realtime_usage_recorded", 1, "realtime",
          "Usage the realtime server counted since its previous batch: one record per project, metric and minute. "
          "Each message is one batch; its event_id identifies the batch.")
class RealtimeUsageRecordedV1(Schema):
    records = RecordList(RealtimeUsageRecord, required=True, validate=validate.Length(min=1))
