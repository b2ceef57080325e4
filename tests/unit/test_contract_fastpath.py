"""The contracts' fast path agrees with marshmallow: whatever FastSchema accepts, marshmallow
accepts with the very same result (values and types), and whatever marshmallow rejects,
FastSchema leaves to marshmallow (answers None). Checked on every registered contract, the
envelope, and a schema that uses the options the fast path has to respect."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import pytest
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from services.shared.contracts import REGISTRY, ContractError, build_message, parse_message
from services.shared.contracts.fastpath import FastSchema
from services.shared.contracts.registry import EnvelopeSchema

SAMPLES = Path(__file__).resolve().parents[1] / "contracts" / "samples"

# Values of many JSON (and a few non-JSON) types, to put in every field in turn.
PROBES: list[Any] = [
    None, True, False, 0, 1, -7, 2**70, 1.5, 0.0, float("nan"), float("inf"), "", "x", "acme-inc",
    "not a slug!", "1", "1.5", "true", "owner", "abcdefghijklmnopqrst", "2fe54d1a-0b42-55ef-9bdb-88f3f0440a72",
    "2026-11-27T12:19:14.939933+00:00", "2026-11-27T12:19:14", "a@example.com", [], [1], {},
    {"name": "x"}, {"bogus": 1}, b"bytes",
]


def typed(value: Any) -> Any:
    """A structure that compares equal only if values *and* types match (nan equals nan)."""
    if isinstance(value, dict):
        return ("dict", tuple((k, typed(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(typed(v) for v in value))
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, repr(value))


def variants(sample: dict[str, Any], keys: list[str]) -> Iterator[dict[str, Any]]:
    yield dict(sample)
    yield {**sample, "unexpected": 1}
    for key in keys:
        without = dict(sample)
        without.pop(key, None)
        yield without
        for probe in PROBES:
            yield {**sample, key: probe}


def assert_agrees(schema: Schema, data: Any) -> None:
    fast = FastSchema(schema)
    try:
        expected = schema.load(data)
    except ValidationError:
        assert fast.load(data) is None, f"fast path accepted what marshmallow rejects: {data!r}"
        return
    got = fast.load(data)
    if got is not None:
        assert typed(got) == typed(expected), data
    assert typed(fast.dump(expected)) == typed(schema.dump(expected)), data


def samples() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.json"))]


@pytest.mark.parametrize("contract", sorted(REGISTRY.values(), key=lambda c: c.key), ids=lambda c: c.event_type)
def test_payload_fast_path_agrees_with_marshmallow(contract: Any) -> None:
    schema = contract.schema()
    sample = next((s["payload"] for s in samples() if s["event_type"] == contract.event_type
                   and s["schema_version"] == contract.schema_version), None) or made_up(schema)
    if FastSchema(schema).enabled and not schema.validate(sample):
        assert FastSchema(schema).load(sample) is not None, "a well-formed payload should take the fast path"
    keys = list(schema.fields) + list(sample)
    for data in variants(sample, keys):
        assert_agrees(schema, data)


def made_up(schema: Schema) -> dict[str, Any]:
    """A payload for a contract without a golden sample: per field, the first probe it takes
    (best effort: a field no probe satisfies is left out, and only rejections get compared)."""
    sample: dict[str, Any] = {}
    for name, field in schema.load_fields.items():
        key = field.data_key or name
        choices = [c for v in field.validators if isinstance(v, validate.OneOf) for c in v.choices]
        for probe in [*choices, *PROBES]:
            if probe is not None and key not in schema.validate({**sample, key: probe}):
                sample[key] = probe
                break
    return sample


def test_envelope_fast_path_agrees_with_marshmallow() -> None:
    schema = EnvelopeSchema()
    for sample in samples():
        assert FastSchema(schema).load(sample) is not None, "a well-formed envelope should take the fast path"
        for data in variants(sample, list(sample)):
            assert_agrees(schema, data)


def test_fast_path_respects_field_options() -> None:
    class Options(Schema):
        class Meta:
            unknown = EXCLUDE

        renamed = fields.String(data_key="wireName", attribute="internal", required=True)
        defaulted = fields.Integer(load_default=42, dump_default=7)
        nullable = fields.Float(allow_none=True, allow_nan=True)
        strict = fields.Integer(strict=True, validate=validate.Range(min=0))
        yes_no = fields.Boolean(truthy={"yes"}, falsy={"no"})
        as_text = fields.Integer(as_string=True)
        when = fields.AwareDateTime(format="iso")
        nested = fields.Nested(EnvelopeSchema, only=("event_type",))
        out_only = fields.String(dump_only=True)

    schema = Options()
    base = {"wireName": "a", "nullable": 1.0, "strict": 3, "yes_no": "yes", "as_text": 5,
            "when": "2026-11-27T12:19:14+00:00", "nested": {"event_type": "x_done"}}
    assert_agrees(schema, base)
    for data in variants(base, [*base, "defaulted", "out_only"]):
        assert_agrees(schema, data)


def test_schema_with_hooks_is_left_to_marshmallow() -> None:
    class Hooked(Schema):
        n = fields.Integer()

        @post_load
        def double(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
            return {"n": data["n"] * 2}

    assert FastSchema(Hooked()).load({"n": 1}) is None
    assert FastSchema(Hooked()).dump({"n": 1}) == {"n": 1}


def test_errors_still_come_from_marshmallow() -> None:
    sample = samples()[0]
    broken = {**sample, "payload": {**sample["payload"], "slug": "not a slug!"}} \
        if "slug" in sample["payload"] else {**sample, "producer_position": 0}
    with pytest.raises(ContractError, match="invalid"):
        parse_message(broken)
    with pytest.raises(ContractError, match="envelope invalid"):
        parse_message({**sample, "event_id": "nope"})


def test_build_then_parse_round_trips_every_sample() -> None:
    from datetime import datetime
    from uuid import UUID

    from services.shared.contracts import OutgoingMessage

    for sample in samples():
        out = OutgoingMessage(sample["event_type"], sample["schema_version"], sample["payload"],
                              org_id=sample["org_id"], project_ref=sample["project_ref"],
                              correlation_id=sample["correlation_id"], causation_id=sample["causation_id"])
        message = build_message(out, event_id=UUID(sample["event_id"]), producer=sample["producer"],
                                producer_position=sample["producer_position"],
                                occurred_at=datetime.fromisoformat(sample["occurred_at"]))
        assert json.loads(json.dumps(message)) == message
        assert parse_message(json.loads(json.dumps(message)))["event_id"] == sample["event_id"]
