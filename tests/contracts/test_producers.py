"""Every producer's real output matches its contracts.

Each producer's application runs a short scenario on eventsourcing's in-memory store; every
stored event then goes through the relay's own mapping (the service's outbox `to_message` +
`build_message`) and the resulting messages are checked against the exported JSON Schemas.
The scenarios must, together, make every contract of their producer appear.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Callable

import pytest
from eventsourcing.application import Application

from services.shared import broker
from services.shared.contracts import REGISTRY, parse_message
from services.shared.eventstore import open_application
from services.shared.relay import PRODUCERS, load_spec, message_for
from services.shared.settings import Settings

from .support import exported_validator, schema_errors

CTX = {"correlation_id": "3b0e6f0a-1d7c-4b9e-8f51-2a6c9d4e7b10", "causation_id": "3b0e6f0a-1d7c-4b9e-8f51-2a6c9d4e7b10"}


class _Outbox:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, mail: Any) -> None:
        self.sent.append(mail)


def orgs_scenario(app: Any) -> None:
    app.mailer = _Outbox()
    user = app.register_user("ada@example.com", "correct horse battery staple", CTX)
    app.issue_token("ada@example.com", "ci", CTX)  # private events must stay private
    as_ada = {**CTX, "actor": user["id"]}
    slug = app.create_organization(user["id"], "Acme Inc", as_ada)["slug"]
    app.update_organization(user["id"], slug, {"name": "Acme Corp", "default_region": "eu-west-1"}, as_ada)
    bob = app.register_user("bob@example.com", "correct horse battery staple", CTX)
    app.invite_member(user["id"], slug, "bob@example.com", "member", as_ada)
    token = app.mailer.sent[-1].body.split("token=")[1].split()[0]
    app.accept_invitation(bob["id"], token, {**CTX, "actor": bob["id"]})
    app.change_member_role(user["id"], slug, bob["id"], "admin", as_ada)
    app.transfer_ownership(user["id"], slug, bob["id"], as_ada)
    app.leave_organization(user["id"], slug, as_ada)

    class NoProjects:
        def count_projects(self, org_slug: str) -> int:
            return 0

    app.delete_organization(bob["id"], slug, NoProjects(), {**CTX, "actor": bob["id"]})


def projects_scenario(app: Any) -> None:
    import uuid

    from services.shared.crypto import SecretBox

    app.box = SecretBox(b"k" * 32)

    class Orgs:
        def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
            return {"slug": slug, "name": slug, "role": "owner"}

    class Billing:
        def get_entitlements(self, org_slug: str) -> dict[str, Any]:
            return {"plan": "pro", "max_projects": None}

    def outcome(ref: str, operation: str, **extra: Any) -> None:
        env = {"event_id": str(uuid.uuid4()),
               "payload": {"ref": ref, "operation_id": app._project(ref).operation_id, **extra}}
        app.apply_completion(env, operation)

    owner = "6b6fb872-a5ee-4210-a763-79eee06c21f6"
    body = {"name": "Acme App", "organization_slug": "acme-inc", "db_pass": "tenant password", "region": "eu-west-1"}
    ref = app.create_project(owner, body, Orgs(), Billing(), None, CTX)["ref"]
    conn = {"db_host": "127.0.0.1", "db_port": 5432, "db_name": ref, "db_user": f"postgres.{ref}", "bucket": f"sp-{ref}"}
    outcome(ref, "create", connection=conn)
    app.pause_project(owner, ref, Orgs(), CTX)
    outcome(ref, "pause", backup_bytes=1024)
    app.restore_project(owner, ref, Orgs(), Billing(), CTX)
    outcome(ref, "restore", connection=conn)
    app.delete_project(owner, ref, Orgs(), CTX)
    outcome(ref, "delete")


def probe_scenario(app: Any) -> None:
    app.record_batch("run-1", [0, 1, 2], fail_seqs=frozenset({2}))


# One scenario per relayed producer. When a producer gains a contract, extend its scenario
# with the command that emits it (test_scenarios_cover_every_contract says which).
SCENARIOS: dict[str, Callable[[Any], None]] = {
    "orgs": orgs_scenario,
    "projects": projects_scenario,
    "probe": probe_scenario,
}


def _messages(producer: str) -> list[tuple[str, dict[str, Any]]]:
    spec = load_spec(producer)
    app: Application = open_application(spec.application, Settings(), in_memory=True)
    SCENARIOS[producer](app)
    routed = []
    for n in app.recorder.select_notifications(start=1, limit=10_000):
        r = message_for(spec, app.mapper.to_domain_event(n), n.id)
        if r is not None:
            routing_key, message = r
            # Exactly the bytes the relay would publish.
            routed.append((routing_key, json.loads(broker.encode(message))))
    return routed


_CACHE: dict[str, list[tuple[str, dict[str, Any]]]] = {}


def messages(producer: str) -> list[tuple[str, dict[str, Any]]]:
    if producer not in _CACHE:
        _CACHE[producer] = _messages(producer)
    return _CACHE[producer]


def test_every_relayed_producer_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(PRODUCERS), "add a scenario for each producer in services.shared.relay.PRODUCERS"


def test_every_contract_is_relayed_by_its_producer() -> None:
    orphans = sorted({c.producer for c in REGISTRY.values()} - set(PRODUCERS))
    assert not orphans, f"contracts whose producer has no relay (never published): {orphans}"


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_producer_output_matches_the_exported_schemas(producer: str) -> None:
    routed = messages(producer)
    assert routed, f"{producer}'s scenario published nothing"
    for routing_key, message in routed:
        c = REGISTRY[(message["event_type"], message["schema_version"])]
        assert c.producer == producer == message["producer"]
        assert routing_key == c.event_type
        errors = schema_errors(exported_validator(c), message)
        assert not errors, f"{producer} emitted an invalid {c.event_type} v{c.schema_version}: {errors}"
        parse_message(message)


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_producer_messages_have_unique_ids_and_increasing_positions(producer: str) -> None:
    routed = [m for _, m in messages(producer)]
    assert len({m["event_id"] for m in routed}) == len(routed)
    positions = [m["producer_position"] for m in routed]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_scenarios_cover_every_contract(producer: str) -> None:
    seen: dict[tuple[str, int], int] = defaultdict(int)
    for _, m in messages(producer):
        seen[(m["event_type"], m["schema_version"])] += 1
    registered = {k for k, c in REGISTRY.items() if c.producer == producer}
    never = sorted(registered - set(seen))
    assert not never, f"{producer}'s scenario never emits {never}: extend SCENARIOS[{producer!r}]"
