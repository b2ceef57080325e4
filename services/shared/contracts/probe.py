"""Contracts of the backbone probe: synthetic events operators (and benches) push end to end."""

from marshmallow import Schema, fields, validate

from .registry import contract


@contract("probe_recorded", 1, "probe", "A synthetic event written to check the backbone end to end.")
class ProbeRecordedV1(Schema):
    run_id = fields.String(required=True)
    seq = fields.Integer(required=True, validate=validate.Range(min=0))
    sent_at = fields.Float(required=True, metadata={"description": "producer's wall clock, epoch seconds"})
    fail = fields.Boolean(load_default=False, dump_default=False, metadata={"description": "probe consumers raise on this (poison test)"})
