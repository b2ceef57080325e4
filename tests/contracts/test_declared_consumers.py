"""The consumers found in the source (services/shared/contracts/consumers.py) read contracts that exist,
and docs/events.md names them."""

from __future__ import annotations

from pathlib import Path

from services.shared.contracts import REGISTRY
from services.shared.contracts.consumers import _from_source, declared_consumers

ROOT = Path(__file__).resolve().parents[2]


def test_every_declared_consumer_reads_a_registered_contract() -> None:
    found = declared_consumers()
    assert found, "no consumer declarations found at all"
    for c in found:
        for v in c.versions:
            assert (c.event_type, v) in REGISTRY, f"{c.consumer} declares {c.event_type} v{v}, which no contract registers"


def test_known_consumers_are_found_both_ways() -> None:
    names = {(c.consumer, c.event_type) for c in declared_consumers()}
    assert ("provisioner.on_project_requested", "project_requested") in names  # @reliable_handler
    assert ("metering.consumer", "api_usage_recorded") in names  # module-level ACCEPTS
    assert ("gateway", "token_revoked") in names  # the gateway's broadcast handlers


def test_versions_and_module_labels_are_read_from_the_declaration() -> None:
    source = (
        "ACCEPTS = (('orgs', 'member_added', 1),)\n"
        "class S:\n"
        "    @reliable_handler('projects', 'project_requested', versions=[1, 2])\n"
        "    def on_it(self, e): ...\n"
    )
    got = _from_source(Path("services/demo/service.py"), source)
    assert ("demo", "orgs", "member_added", (1,)) in [(c.consumer, c.producer, c.event_type, c.versions) for c in got]
    assert ("demo.on_it", "projects", "project_requested", (1, 2)) in [
        (c.consumer, c.producer, c.event_type, c.versions) for c in got]


def test_the_catalog_names_each_consumer() -> None:
    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    for c in declared_consumers():
        rows = [line for line in text.splitlines() if line.startswith("| ") and f"[{c.event_type}](#" in line]
        assert any(f"`{c.consumer}`" in row for row in rows), f"docs/events.md does not list {c.consumer} for {c.event_type}"
