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
from services.shared.contracts import ADAPTERS, REGISTRY, parse_message
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
    issued = app.issue_token("ada@example.com", "ci", CTX)  # private events must stay private
    as_ada = {**CTX, "actor": user["id"]}
    app.revoke_token(user["id"], issued["id"], as_ada)
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
    # Platform administration: an operator promotes ada; ada disables, enables, promotes bob.
    app.promote_user("ada@example.com", CTX)
    app.admin_set_disabled(user["id"], bob["id"], True, as_ada)
    app.admin_set_disabled(user["id"], bob["id"], False, as_ada)
    app.admin_set_admin(user["id"], bob["id"], True, as_ada)
    app.admin_set_admin(user["id"], bob["id"], False, as_ada)


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


def provisioner_scenario(app: Any) -> None:
    from services.provisioner.application import MemorySagaLocks, SagaRunner
    from services.provisioner.domain import RetryPolicy
    from services.provisioner.drivers.base import Driver, StepContext, StepError
    from services.provisioner.drivers.local import LocalDriver

    class ScenarioDriver(Driver):
        """The local driver's plans and facts, without the infrastructure; fails on request."""

        PLANS = LocalDriver.PLANS
        broken = False

        def run_step(self, operation: str, step: str, ctx: StepContext) -> dict[str, Any]:
            if self.broken:
                raise StepError("could not connect to PostgreSQL at 127.0.0.1:5432 (connection refused)")
            return {"backup_bytes": 1048576} if step == "backup_database" else {}

        def connection_info(self, ref: str) -> dict[str, Any]:
            return {"db_host": "127.0.0.1", "db_port": 5432, "db_name": ref, "db_user": f"postgres.{ref}",
                    "bucket": f"sp-{ref}"}

        def check_tenant(self, ref: str) -> dict[str, dict[str, Any]]:
            return {}

    class Credentials:
        def get_tenant_credentials(self, ref: str) -> dict[str, str]:
            return {"db_pass": "tenant password", "jwt_secret": "jwt secret"}

    driver = ScenarioDriver()
    app.plans = dict(driver.PLANS)
    app.retry = RetryPolicy(max_attempts=2, base_delay_ms=0)
    runner = SagaRunner(driver, MemorySagaLocks(), retry=app.retry, sleep=lambda _: None)
    ref = "auyavwhkyjpmcwdydbso"
    operations = [("create", "98da48a2-6e47-4fb5-a608-4885470389bc"), ("pause", "5f0c2b1e-8a43-4c1d-9e7a-2b6d8f3a1c55"),
                  ("restore", "c7e91a04-3d2b-4f6e-8a15-9b0d7e4c2f18"), ("delete", "e2a5d8c1-7b94-4e03-a6f2-1c8b5d9e3a70")]
    for operation, operation_id in operations:
        saga = app.open_saga(operation, ref, operation_id, org_slug="acme-inc", ctx=CTX)
        runner.run(app, saga["saga_id"], Credentials())
    driver.broken = True
    saga = app.open_saga("create", "qwertyuiopasdfghjklz", "0d4f6a2b-9c1e-4b8d-a7f3-5e2c8b1d4a96",
                         org_slug="acme-inc", ctx=CTX)
    runner.run(app, saga["saga_id"], Credentials())


def billing_scenario(app: Any) -> None:
    from datetime import datetime, timezone

    now = [datetime(2026, 1, 16, tzinfo=timezone.utc)]
    app.clock = lambda: now[0]
    owner = "6b6fb872-a5ee-4210-a763-79eee06c21f6"

    class Orgs:
        def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
            return {"slug": slug, "name": slug, "role": "owner"}

    class Projects:
        def list_projects(self, user_id: str) -> list[dict[str, Any]]:
            return [{"organization_slug": "acme-inc", "status": "ACTIVE_HEALTHY"}]

    class Usage:
        def period_totals(self, org_slug: str, start_iso: str, end_iso: str) -> dict[str, int]:
            return {"egress_bytes": 262_500_000_000, "function_invocations": 3_000_000}

    class Payments:
        name = "local"

        def ensure_customer(self, org_slug: str, subscription_id: str) -> str:
            return f"local-{org_slug}"

        def submit_invoice(self, customer_id: str, invoice: dict[str, Any]) -> dict[str, Any]:
            return {"external_id": f"local-{invoice['id']}", "status": "open"}

    created = {"event_id": "9a1f3c2e-4b5d-4e6f-8a7b-1c2d3e4f5a6b", "occurred_at": "2026-01-01T09:00:00+00:00",
               "correlation_id": CTX["correlation_id"], "payload": {"slug": "acme-inc"}}
    app.start_subscription(created)  # private: orgs already announced the organization
    app.change_plan(owner, "acme-inc", {"plan": "pro", "spend_cap": True}, Orgs(), Projects(), None, CTX)
    app.change_plan(owner, "acme-inc", {"plan": "pro", "spend_cap": False}, Orgs(), Projects(), None, CTX)
    now[0] = datetime(2026, 2, 2, tzinfo=timezone.utc)
    invoice = app.close_period("acme-inc", "2026-01", Usage(), Payments(), CTX)

    class Verified:
        provider = "stripe"

        def verify(self, payload: str, signature: str) -> dict[str, Any]:
            return {"id": "evt_1", "type": "invoice.paid", "created": 1770000000,
                    "data": {"object": {"metadata": {"platform_invoice_id": invoice["id"]}}}}

    app.receive_provider_event("{}", "t=1,v1=checked-by-the-adapter", Verified())


def functions_scenario(app: Any) -> None:
    from services.functions.storage import MemoryBundleStore, MemoryLogStore, MemoryTenantStore
    from services.shared.crypto import SecretBox

    app.box = SecretBox(b"k" * 32)
    app.bundles, app.logs, app.tenants = MemoryBundleStore(), MemoryLogStore(), MemoryTenantStore()

    class Projects:
        def get_project(self, user_id: str, ref: str) -> dict[str, Any]:
            return {"ref": ref, "organization_slug": "acme-inc", "status": "ACTIVE_HEALTHY"}

    class Orgs:
        def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
            return {"slug": slug, "name": slug, "role": "owner"}

    owner, ref = "6b6fb872-a5ee-4210-a763-79eee06c21f6", "auyavwhkyjpmcwdydbso"
    src = b"Deno.serve(() => new Response('hello'))"
    app.deploy_function(owner, ref, "hello", {"entrypoint_path": "index.ts"}, [("index.ts", src)], False,
                        Projects(), Orgs(), CTX)
    app.set_secrets(owner, ref, [{"name": "API_KEY", "value": "s3cret"}], Projects(), Orgs(), CTX)  # private
    app.record_invocations("runtime-1", [{"ref": ref, "org_slug": "acme-inc", "slug": "hello", "version": 1,
                                          "status": 200, "duration_ms": 3.25, "at_ms": 1795000000000,
                                          "request_id": "3b0e6f0a-1d7c-4b9e-8f51-2a6c9d4e7b10"}])
    app.delete_function(owner, ref, "hello", Projects(), Orgs(), CTX)


def realtime_scenario(app: Any) -> None:
    from services.realtime.config_views import MemoryConfigViews

    app.views = MemoryConfigViews()

    class Projects:
        def get_project(self, user_id: str, ref: str) -> dict[str, Any]:
            return {"ref": ref, "organization_slug": "acme-inc", "status": "ACTIVE_HEALTHY"}

    class Orgs:
        def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
            return {"slug": slug, "name": slug, "role": "owner"}

    class Billing:
        def get_entitlements(self, org_slug: str) -> dict[str, Any]:
            return {"plan": "pro", "realtime": {}}

    owner, ref = "6b6fb872-a5ee-4210-a763-79eee06c21f6", "auyavwhkyjpmcwdydbso"
    ctx = {**CTX, "actor": owner}
    app.update_realtime_config(owner, ref, {"max_concurrent_users": 1000, "private_only": True}, Projects(), Orgs(),
                               Billing(), ctx)
    app.shutdown_realtime(owner, ref, Projects(), Orgs(), Billing(), ctx)


def probe_scenario(app: Any) -> None:
    app.record_batch("run-1", [0, 1, 2], fail_seqs=frozenset({2}))


def gateway_scenario(app: Any) -> None:
    # The gateway's real meter, flushing into its usage outbox: one batch of four records.
    from gateway.usage import UsageMeter

    meter = UsageMeter(app, max_records=100)
    ref = "auyavwhkyjpmcwdydbso"
    meter.add("acme-inc", ref, requests=1, egress=512, at=1767225600)
    meter.add("acme-inc", ref, requests=2, egress=2048, at=1767225690)
    meter.flush()


def metering_scenario(app: Any) -> None:
    ref = "auyavwhkyjpmcwdydbso"

    class Usage:
        """This month's usage as metering's SQL store reports it."""

        def __init__(self) -> None:
            self.changed = {"acme-inc"}

        def month_usage(self, org_slug: str, month_start: int) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
            return {"egress_bytes": 4_100_000_000, "api_requests": 900}, {ref: {"api_requests": 900}}

        def claim_changed_orgs(self) -> list[str]:
            out, self.changed = sorted(self.changed), set()
            return out

        def mark_changed(self, org_slugs: Any) -> None:
            self.changed.update(org_slugs)

    class Billing:
        def get_entitlements(self, org_slug: str) -> dict[str, Any]:
            return {"plan": "free", "quotas": {
                "egress_bytes": {"included": 5_000_000_000, "unit": 1_000_000_000, "overage_price": None, "limit": "hard"},
                "api_requests": {"included": None, "unit": 1_000_000, "overage_price": None, "limit": "soft"}}}

    app.usage = Usage()
    app.set_budget("acme-inc", ref, "api_requests", 1000, CTX)  # a budget: alerts at 50 and 80 %
    app.check_alerts(Billing())  # egress at 82 % of the quota: alerts at 50 and 80 %


# One scenario per relayed producer. When a producer gains a contract, extend its scenario
# with the command that emits it (test_scenarios_cover_every_contract says which).
SCENARIOS: dict[str, Callable[[Any], None]] = {
    "orgs": orgs_scenario,
    "projects": projects_scenario,
    "provisioner": provisioner_scenario,
    "billing": billing_scenario,
    "functions": functions_scenario,
    "realtime": realtime_scenario,
    "probe": probe_scenario,
    "gateway": gateway_scenario,
    "metering": metering_scenario,
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
    # A version superseded by a newer one is no longer emitted, but still reached: consumers
    # of it read the newer messages through the contract's adapter.
    reached = set(seen)
    for event_type, version in list(seen):
        while (step := ADAPTERS.get((event_type, version))) is not None:
            version = step.to_version
            reached.add((event_type, version))
    never = sorted(registered - reached)
    assert not never, f"{producer}'s scenario never emits {never}: extend SCENARIOS[{producer!r}]"
