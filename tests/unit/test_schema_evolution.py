"""Schema evolution, worked example: project_status_changed v2 carries the operation's progress.

Stored outcome events of version 1 are upcast on read (eventsourcing's class_version and
upcast_v1_v2); the outbox publishes v2 for them too, with the progress unknown; a consumer
that accepts only v1 reads every v2 message through the contract's adapter.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.projects.domain import Project
from services.projects.outbox import RELAY, to_message
from services.shared.contracts import ContractError, parse_message
from services.shared.eventstore import open_application
from services.shared.probe import ProbeApplication
from services.shared.relay import message_for
from services.shared.settings import load_settings


def as_sent(event: Any, position: int) -> dict[str, Any]:
    """The message the relay publishes for a stored event, as it arrives (JSON)."""
    routed = message_for(RELAY, event, position)
    assert routed is not None
    return json.loads(json.dumps(routed[1], default=str))


def project_through_an_outcome(failed: bool) -> tuple[Project, Any]:
    project = Project(ref="abcdefghijklmnopqrst", org_slug="acme", name="p", region="eu-west-1", db_pass_enc="x",
                      jwt_secret_enc="y", keys_issued_at=0, operation_id="op-1", meta={})
    project.report_step("m1", "op-1", "create_database", 2, 5)
    if failed:
        project.fail_operation("m2", "op-1", "create", "create_roles", "boom")
    else:
        project.complete_operation("m2", "op-1", "create", {"db_host": "h"})
    return project, project.collect_events()[-1]


@pytest.mark.parametrize("failed", [False, True])
def test_stored_v1_outcome_events_are_upcast_on_read(failed: bool) -> None:
    app = open_application(ProbeApplication, load_settings({}), in_memory=True)  # only for its mapper
    _, event = project_through_an_outcome(failed)
    stored = app.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    assert state.pop("class_version") == 2
    # What the code before v2 stored: no class_version, no progress fields.
    state.pop("total_steps")
    state.pop("step_index", None)
    old = stored.__class__(originator_id=stored.originator_id, originator_version=stored.originator_version,
                           topic=stored.topic, state=json.dumps(state).encode())
    read = app.mapper.to_domain_event(old)
    assert type(read) is type(event) and read.total_steps is None
    if failed:
        assert read.step_index is None and read.reason == "boom"
    # The outbox publishes v2 for it too, progress unknown, and a v1 consumer reads it as v1.
    out = to_message(read)
    assert out is not None and out.schema_version == 2 and out.payload["total_steps"] is None
    message = as_sent(read, 7)
    assert parse_message(message, accept=[1])["payload"] == {"ref": "abcdefghijklmnopqrst", "org_slug": "acme",
                                                             "status": out.payload["status"],
                                                             "reason": "boom" if failed else None}


def test_new_outcomes_carry_progress_and_v1_only_consumers_read_them() -> None:
    _, event = project_through_an_outcome(failed=True)
    out = to_message(event)
    assert out is not None and (out.event_type, out.schema_version) == ("project_status_changed", 2)
    assert out.payload == {"ref": "abcdefghijklmnopqrst", "org_slug": "acme", "status": "INIT_FAILED",
                           "reason": "boom", "step": "create_roles", "step_index": 2, "total_steps": 5}
    message = as_sent(event, 9)
    v2 = parse_message(message, accept=[1, 2])
    assert v2["schema_version"] == 2 and v2["payload"]["step"] == "create_roles"
    v1 = parse_message(message, accept=[1])
    assert v1["schema_version"] == 1 and "step" not in v1["payload"] and v1["event_id"] == v2["event_id"]
    # A version nobody can adapt to is refused, as before.
    with pytest.raises(ContractError, match="no adapter"):
        parse_message({**message, "event_type": "project_requested", "schema_version": 1,
                       "payload": {"ref": "abcdefghijklmnopqrst", "org_slug": "a", "name": "n", "region": "r",
                                   "operation_id": "o"}}, accept=[2])
