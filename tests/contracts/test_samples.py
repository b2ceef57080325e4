"""Golden samples: one per contract, each valid by the exported JSON Schema and by
parse_message, each exactly what a producer would emit; broken messages are refused by both."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any, Callable

import pytest

from services.shared.contracts import REGISTRY, ContractError, OutgoingMessage, build_message, parse_message
from services.shared.contracts.export import file_stem

from .support import SAMPLES, contract_ids, contracts, exported_validator, load_sample, schema_errors


def _contract(stem: str) -> Any:
    return next(c for c in contracts() if file_stem(c) == stem)


def test_every_contract_has_a_sample_and_every_sample_a_contract() -> None:
    wanted = {f"{file_stem(c)}.json" for c in contracts()}
    present = {p.name for p in SAMPLES.glob("*.json")}
    assert not wanted - present, f"contracts without a golden sample in {SAMPLES}: {sorted(wanted - present)}"
    assert not present - wanted, f"samples without a registered contract: {sorted(present - wanted)}"


@pytest.mark.parametrize("stem", contract_ids())
def test_sample_matches_its_exported_json_schema(stem: str) -> None:
    c = _contract(stem)
    assert schema_errors(exported_validator(c), load_sample(c)) == []


@pytest.mark.parametrize("stem", contract_ids())
def test_sample_passes_parse_message(stem: str) -> None:
    c = _contract(stem)
    sample = load_sample(c)
    env = parse_message(copy.deepcopy(sample))
    assert (env["event_type"], env["schema_version"], env["producer"]) == (c.event_type, c.schema_version, c.producer)
    assert env["event_id"] == sample["event_id"]


@pytest.mark.parametrize("stem", contract_ids())
def test_sample_is_what_build_message_emits(stem: str) -> None:
    # A sample in canonical form (defaults filled, timestamps as the relay writes them), so
    # a consumer tested on it is tested on real traffic.
    c = _contract(stem)
    s = load_sample(c)
    out = OutgoingMessage(s["event_type"], s["schema_version"], s["payload"], org_id=s["org_id"],
                          project_ref=s["project_ref"], correlation_id=s["correlation_id"],
                          causation_id=s["causation_id"])
    built = build_message(out, event_id=uuid.UUID(s["event_id"]), producer=s["producer"],
                          producer_position=s["producer_position"],
                          occurred_at=datetime.fromisoformat(s["occurred_at"]))
    assert built == s


# -- changed or broken messages are refused, with a clear reason ------------------------------

def _org_sample() -> dict[str, Any]:
    return load_sample(REGISTRY[("organization_created", 1)])


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(m: dict[str, Any]) -> None:
        target = m
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def _set(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(m: dict[str, Any]) -> None:
        target = m
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


BROKEN = [
    # (id, mutation, words the ContractError must contain)
    ("payload-field-missing", _drop("payload", "slug"), ["organization_created v1 payload invalid", "slug",
                                                         "Missing data"]),
    ("payload-field-renamed", lambda m: m["payload"].update(org_slug=m["payload"].pop("slug")),
     ["slug", "org_slug", "Unknown field"]),
    ("payload-field-added", _set("pro", "payload", "plan"), ["plan", "Unknown field"]),
    ("payload-wrong-type", _set(42, "payload", "name"), ["name", "Not a valid string"]),
    ("payload-constraint", _set("", "payload", "name"), ["name", "Length must be between 1 and 256"]),
    ("payload-pattern", _set("acme inc", "payload", "slug"), ["slug", "String does not match"]),
    ("unknown-version", _set(2, "schema_version"), ["no contract for organization_created v2"]),
    ("wrong-producer", _set("billing", "producer"), ["must come from orgs, not billing"]),
    ("envelope-field-missing", _drop("event_id"), ["envelope invalid", "event_id", "Missing data"]),
    ("naive-timestamp", _set("2026-11-27T12:19:14", "occurred_at"), ["envelope invalid", "occurred_at"]),
    ("envelope-field-added", _set("x", "tenant"), ["envelope invalid", "tenant", "Unknown field"]),
    ("bad-event-id", _set("not-a-uuid", "event_id"), ["envelope invalid", "event_id", "Not a valid UUID"]),
]


@pytest.mark.parametrize("mutate,expected", [(m, e) for _, m, e in BROKEN], ids=[i for i, _, _ in BROKEN])
def test_broken_message_is_refused_by_parse_message_and_by_the_schema(
    mutate: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    message = _org_sample()
    mutate(message)
    with pytest.raises(ContractError) as info:
        parse_message(copy.deepcopy(message))
    text = str(info.value)
    missing = [w for w in expected if w not in text]
    assert not missing, f"error {text!r} does not say {missing}"
    # The published schema must refuse it too: docs and code agree on what is a message.
    assert schema_errors(exported_validator(REGISTRY[("organization_created", 1)]), message)


def test_non_object_body_is_refused() -> None:
    with pytest.raises(ContractError, match="not a JSON object"):
        parse_message(["organization_created"])  # type: ignore[arg-type]
