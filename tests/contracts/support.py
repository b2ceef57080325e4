"""Contract-test helpers: golden samples and validators of the exported JSON Schemas."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from services.shared.contracts import REGISTRY, Contract
from services.shared.contracts.export import file_stem
from tests.conftest import ROOT

SAMPLES = Path(__file__).parent / "samples"
DOCS_EVENTS = ROOT / "docs" / "events"

# Our own checker, so format checks do not depend on which optional jsonschema extras
# happen to be installed (date-time needs one of them otherwise, and silently passes without).
FORMATS = FormatChecker(formats=("email", "uuid"))


@FORMATS.checks("date-time", raises=ValueError)
def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value.upper():
        raise ValueError("no time part")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset")
    return True


def contracts() -> list[Contract]:
    return sorted(REGISTRY.values(), key=lambda c: c.key)


def contract_ids() -> list[str]:
    return [file_stem(c) for c in contracts()]


def sample_path(c: Contract) -> Path:
    return SAMPLES / f"{file_stem(c)}.json"


def load_sample(c: Contract) -> dict[str, Any]:
    """A fresh copy of the golden sample for one contract (callers may mutate it)."""
    return json.loads(sample_path(c).read_text(encoding="utf-8"))


def sample_for(event_type: str, version: int) -> dict[str, Any]:
    return load_sample(REGISTRY[(event_type, version)])


def exported_validator(c: Contract) -> Draft202012Validator:
    """Validator of the JSON Schema file in docs/ (what external consumers get)."""
    path = DOCS_EVENTS / f"{file_stem(c)}.schema.json"
    assert path.is_file(), f"{path} missing: run `python -m services.shared.contracts.export`"
    return Draft202012Validator(json.loads(path.read_text(encoding="utf-8")), format_checker=FORMATS)


def schema_errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))]
