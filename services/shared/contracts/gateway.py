"""Contracts published by the gateway (exchange `gateway.events`): the usage it counts on
project-scoped requests, sent in batches (one message per flush, never one per request)."""

from typing import Any

from marshmallow import Schema, fields, validate

from .fastpath import FastSchema
from .registry import contract

SLUG = validate.Regexp(r"^[\w-]+$")
REF = validate.Regexp(r"^[a-z]{20}$")
COUNT = validate.Range(min=0)


class UsageRecord(Schema):
    org_id = fields.String(required=True, validate=SLUG, metadata={"description": "Slug of the project's organization"})
    project_ref = fields.String(required=True, validate=REF)
    metric = fields.String(required=True, validate=validate.OneOf(["api_requests", "egress_bytes"]),
                           metadata={"description": "api_requests: requests counted; egress_bytes: response body bytes sent"})
    minute = fields.Integer(required=True, validate=COUNT,
                            metadata={"description": "Epoch second (UTC) the minute started in which it was counted"})
    quantity = fields.Integer(required=True, validate=COUNT)


class RecordList(fields.List):
    """`List(Nested(schema))`, with each well-formed item checked by the contracts' fast path
    (the same fields and validators without marshmallow's per-call machinery; see
    fastpath.py). A batch holds thousands of records and the relay and the consumer each
    check every one: this is most of their work. Anything the fast path is unsure of goes
    to marshmallow, which stays the authority and the source of every error message."""

    def __init__(self, schema: type[Schema], **kwargs: Any):
        super().__init__(fields.Nested(schema), **kwargs)
        self.fast = FastSchema(schema())

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if type(value) is list:
            load, out = self.fast.load, []
            for item in value:
                checked = load(item)
                if checked is None:
                    break
                out.append(checked)
            else:
                return out
        return super()._deserialize(value, attr, data, **kwargs)

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        if value is None or not all(type(v) is dict for v in value):
            return super()._serialize(value, attr, obj, **kwargs)
        dump = self.fast.dump
        return [dump(v) for v in value]


@contract("api_usage_recorded", 1, "gateway",
          "Usage the gateway counted on project-scoped requests since its previous batch: one record per "
          "project, metric and minute. Each message is one batch; its event_id identifies the batch.")
class ApiUsageRecordedV1(Schema):
    records = RecordList(UsageRecord, required=True, validate=validate.Length(min=1))
