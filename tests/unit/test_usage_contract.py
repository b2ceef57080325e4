"""The gateway's usage contract checks a batch's records on a fast path: it must accept and
refuse exactly what marshmallow's plain List(Nested(UsageRecord)) does, with the same result."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields, validate

from services.shared.contracts.gateway import ApiUsageRecordedV1, UsageRecord

GOOD = {"org_id": "acme-inc", "project_ref": "abcdefghijklmnopqrst", "metric": "egress_bytes", "minute": 1767225600,
        "quantity": 512}


class Plain(Schema):
    records = fields.List(fields.Nested(UsageRecord), required=True, validate=validate.Length(min=1))


def outcome(schema: Schema, payload: Any) -> Any:
    try:
        return ("ok", schema.load(copy.deepcopy(payload)))
    except ValidationError as e:
        return ("refused", e.messages)


@pytest.mark.parametrize("change", [
    {}, {"quantity": 0}, {"quantity": 2**62}, {"quantity": "7"}, {"quantity": True}, {"quantity": -1},
    {"quantity": 1.5}, {"minute": None}, {"metric": "db_size_bytes"}, {"project_ref": "ABC"}, {"org_id": "a b"},
    {"extra": 1}, {"org_id": 5},
])
def test_fast_path_agrees_with_marshmallow(change: dict[str, Any]) -> None:
    records = [dict(GOOD), {**GOOD, **change}, dict(GOOD, metric="api_requests")]
    fast, plain = outcome(ApiUsageRecordedV1(), {"records": records}), outcome(Plain(), {"records": records})
    assert fast == plain
    if fast[0] == "ok":
        assert ApiUsageRecordedV1().dump(fast[1]) == Plain().dump(plain[1])


@pytest.mark.parametrize("records", [[], "nope", [None], [[1, 2]]])
def test_malformed_lists_are_refused_alike(records: Any) -> None:
    assert outcome(ApiUsageRecordedV1(), {"records": records}) == outcome(Plain(), {"records": records})
