"""Contracts published by the metering service (exchange `metering.events`)."""

from marshmallow import Schema, fields, validate

from .registry import contract

SLUG = validate.Regexp(r"^[\w-]+$")
REF = validate.Regexp(r"^[a-z]{20}$")
METRICS = ("api_requests", "egress_bytes", "function_invocations", "realtime_messages", "realtime_peak_connections",
           "db_size_bytes", "storage_bytes")


@contract("usage_alert_triggered", 1, "metering",
          "Usage crossed a threshold (50, 80 or 100 %) of a plan quota (organization) or of a budget a user "
          "set (project) within a billing period. Sent once per organization or project, metric, kind, "
          "period and threshold.")
class UsageAlertTriggeredV1(Schema):
    alert_id = fields.UUID(required=True, metadata={"description": "uuid5 of the alert's natural key: stable"})
    org_slug = fields.String(required=True, validate=SLUG)
    project_ref = fields.String(required=True, allow_none=True, validate=REF,
                                metadata={"description": "The project, for a budget alert; null for a quota alert"})
    kind = fields.String(required=True, validate=validate.OneOf(["quota", "budget"]))
    metric = fields.String(required=True, validate=validate.OneOf(METRICS))
    threshold_percent = fields.Integer(required=True, validate=validate.OneOf([50, 80, 100]))
    limit = fields.Integer(required=True, validate=validate.Range(min=1),
                           metadata={"description": "Included quantity (quota) or budget, in the metric's unit"})
    quantity = fields.Integer(required=True, validate=validate.Range(min=0),
                              metadata={"description": "Usage in the period when the crossing was seen"})
    period_start = fields.AwareDateTime(required=True, format="iso")
    period_end = fields.AwareDateTime(required=True, format="iso")
