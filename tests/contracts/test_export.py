"""The exported contract docs: up to date with the code, valid, and faithful to marshmallow."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from marshmallow import EXCLUDE, Schema, fields, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from services.shared.contracts import REGISTRY
from services.shared.contracts import export
from services.shared.contracts.export import ExportError, file_stem, schema_to_json
from tests.conftest import ROOT

from .support import FORMATS, contract_ids, contracts, load_sample, schema_errors


# -- docs stay true to the code ---------------------------------------------------------------

def test_docs_are_generated_from_the_current_contracts() -> None:
    d = export.drift(ROOT)
    assert not d.stale and not d.orphans, (
        f"docs out of date (stale: {d.stale}, orphans: {d.orphans}); "
        "run `python -m services.shared.contracts.export` and commit the result"
    )


def test_check_mode_fails_on_edited_or_orphan_files_and_write_mode_repairs(tmp_path: Path) -> None:
    # Start from a correct copy of docs/, then break it in the two ways that matter.
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    assert export.main(["--check", "--root", str(tmp_path)]) == 0

    edited = tmp_path / "docs" / "events.md"
    edited.write_text(edited.read_text() + "hand edit\n")
    orphan = tmp_path / "docs" / "events" / "gone_event.v9.schema.json"
    orphan.write_text("{}\n")
    assert export.main(["--check", "--root", str(tmp_path)]) == 1

    # Write mode regenerates the edited file and removes the orphan.
    assert export.main(["--root", str(tmp_path)]) == 0
    assert not orphan.exists()
    assert export.main(["--check", "--root", str(tmp_path)]) == 0


# -- the converter ----------------------------------------------------------------------------

class _Inner(Schema):
    n = fields.Integer(required=True, validate=validate.Range(min=0, max=10, max_inclusive=False))


class _Everything(Schema):
    s = fields.String(required=True, validate=[validate.Length(min=2, max=5), validate.Regexp(r"[a-z]+")],
                      metadata={"description": "short word"})
    e = fields.Email()
    u = fields.UUID(allow_none=True)
    i = fields.Integer(validate=validate.OneOf([1, 2, 3]))
    f = fields.Float(validate=validate.Range(min=0, min_inclusive=False))
    b = fields.Boolean(dump_default=True)
    t = fields.AwareDateTime(format="iso")
    d = fields.DateTime()
    tags = fields.List(fields.String(validate=validate.Length(max=3)), validate=validate.Length(min=1))
    meta = fields.Dict(keys=fields.String(), values=fields.Integer())
    inner = fields.Nested(_Inner)
    inners = fields.Nested(_Inner, many=True, allow_none=True)
    renamed = fields.String(data_key="renamedKey", required=True)


def test_converter_maps_each_supported_field_and_validator() -> None:
    out = schema_to_json(_Everything)
    p = out["properties"]
    assert out["required"] == ["s", "renamedKey"]
    assert out["additionalProperties"] is False  # marshmallow's default unknown=RAISE
    assert p["s"] == {"description": "short word", "type": "string", "minLength": 2, "maxLength": 5,
                      "pattern": "^(?:[a-z]+)"}  # re.match anchors at the start only
    assert p["e"] == {"type": "string", "format": "email"}
    assert p["u"] == {"type": ["string", "null"], "format": "uuid"}
    assert p["i"] == {"type": "integer", "enum": [1, 2, 3]}
    assert p["f"] == {"type": "number", "exclusiveMinimum": 0}
    assert p["b"] == {"type": "boolean", "default": True}
    assert p["t"] == p["d"] == {"type": "string", "format": "date-time"}
    assert p["tags"] == {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1}
    assert p["meta"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    inner = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10}},
             "required": ["n"], "additionalProperties": False}
    assert p["inner"] == inner
    assert p["inners"] == {"type": ["array", "null"], "items": inner}
    assert "renamedKey" in p and "renamed" not in p


def test_converter_respects_unknown_exclude() -> None:
    class Lenient(Schema):
        class Meta:
            unknown = EXCLUDE

        a = fields.String()

    assert "additionalProperties" not in schema_to_json(Lenient)


@pytest.mark.parametrize("field", [
    fields.String(validate=lambda v: v != "x"),  # arbitrary callables cannot be stated
    fields.IP(),
    fields.String(load_only=True),
    fields.String(validate=validate.Regexp("a", flags=re.IGNORECASE)),
], ids=["callable-validator", "unmapped-field", "load-only", "regex-flags"])
def test_converter_refuses_what_it_cannot_state(field: fields.Field) -> None:
    # A schema that says less than marshmallow checks would let a sample pass the docs and
    # fail the consumer; refusing makes the gap visible when the contract is written.
    schema = Schema.from_dict({"x": field})
    with pytest.raises(ExportError, match="x"):
        schema_to_json(schema)


@pytest.mark.parametrize("stem", contract_ids())
def test_exported_message_schemas_are_valid_json_schema(stem: str) -> None:
    c = next(c for c in contracts() if file_stem(c) == stem)
    doc = export.message_json(c)
    Draft202012Validator.check_schema(doc)
    # The pinned envelope fields are what make the file specific to this contract.
    assert doc["properties"]["event_type"]["const"] == c.event_type
    assert doc["properties"]["schema_version"]["const"] == c.schema_version
    assert doc["properties"]["producer"]["const"] == c.producer


# -- AsyncAPI ---------------------------------------------------------------------------------

def _asyncapi() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))


COMPONENT_KEY = re.compile(r"^[\w\d.\-_]+$")
EXT = re.compile(r"^x-[\w\d.\-_]+$")
ALLOWED = {  # fixed fields of AsyncAPI 2.6.0 objects (plus x- extensions)
    "document": {"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "components", "tags",
                 "externalDocs"},
    "channel": {"$ref", "parameters", "description", "servers", "publish", "subscribe", "deprecated", "bindings"},
    "operation": {"traits", "summary", "description", "security", "tags", "externalDocs", "operationId",
                  "bindings", "message"},
    "message": {"schemaFormat", "contentType", "headers", "messageId", "payload", "correlationId", "tags",
                "summary", "name", "title", "description", "externalDocs", "deprecated", "examples", "bindings",
                "traits"},
}


def _unknown_keys(obj: dict[str, Any], kind: str) -> set[str]:
    return {k for k in obj if k not in ALLOWED[kind] and not EXT.match(k)}


def test_asyncapi_document_has_the_2_6_shape() -> None:
    doc = _asyncapi()
    assert doc["asyncapi"] == "2.6.0"
    assert {"title", "version"} <= set(doc["info"])
    assert not _unknown_keys(doc, "document")
    for name, channel in doc["channels"].items():
        assert not _unknown_keys(channel, "channel"), name
        assert not _unknown_keys(channel["subscribe"], "operation"), name
    for section in ("schemas", "messages"):
        assert all(COMPONENT_KEY.match(k) for k in doc["components"][section])
    ids = [m["messageId"] for m in doc["components"]["messages"].values()]
    assert len(ids) == len(set(ids)), "messageId must be unique"
    for key, message in doc["components"]["messages"].items():
        assert not _unknown_keys(message, "message"), key
        assert re.match(r"^\$message\.(header|payload)#(/(([^/~])|(~[01]))*)*", message["correlationId"]["location"])
        Draft7Validator.check_schema(message["payload"])  # AsyncAPI 2 schemas are draft-07 based


def test_asyncapi_has_a_channel_per_producer_and_a_message_per_contract() -> None:
    doc = _asyncapi()
    assert set(doc["channels"]) == {f"{c.producer}.events" for c in contracts()}
    for c in contracts():
        channel = doc["channels"][f"{c.producer}.events"]
        assert channel["bindings"]["amqp"]["exchange"] == {
            "name": f"{c.producer}.events", "type": "topic", "durable": True, "autoDelete": False}
        refs = [m["$ref"] for m in channel["subscribe"]["message"]["oneOf"]]
        assert f"#/components/messages/{file_stem(c)}" in refs
        message = doc["components"]["messages"][file_stem(c)]
        assert message["bindings"]["amqp"]["messageType"] == c.event_type == message["x-routing-key"]
    n_refs = sum(len(ch["subscribe"]["message"]["oneOf"]) for ch in doc["channels"].values())
    assert n_refs == len(REGISTRY)


@pytest.mark.parametrize("stem", contract_ids())
def test_asyncapi_message_schema_accepts_the_sample_and_pins_the_contract(stem: str) -> None:
    # Resolve the message's $refs inside the document itself, as an AsyncAPI tool would.
    c = next(c for c in contracts() if file_stem(c) == stem)
    uri = "urn:test:asyncapi"
    registry = Registry().with_resource(uri, Resource.from_contents(_asyncapi(), default_specification=DRAFT7))
    validator = Draft7Validator({"$ref": f"{uri}#/components/messages/{stem}/payload"}, registry=registry,
                                format_checker=FORMATS)
    sample = load_sample(c)
    assert schema_errors(validator, sample) == []
    wrong_version = {**sample, "schema_version": c.schema_version + 1}
    assert schema_errors(validator, wrong_version)
