"""Usage alerts: a threshold crossed in a billing period is recorded once (the 80 % alert
fires once however often usage is checked), owners and admins are mailed once per alert,
and project budgets alert like quotas. The metering application on its event store (in
memory) with its real SQL usage store on a throwaway database; billing and orgs are fakes."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
from eventsourcing.persistence import IntegrityError

from services.metering.application import MeteringApplication
from services.metering.domain import UsageAlert
from services.metering.outbox import to_message
from services.metering.store import DDL, SCHEMA, UsageStore
from services.shared.contracts import build_message, event_id_for, parse_message
from services.shared.db import make_pool, drop_database, ensure_database, ensure_schema
from services.shared.eventstore import open_application
from services.shared.mail import Mail
from services.shared.settings import Settings
from tests.conftest import make_test_settings

NOW = int(datetime(2024, 3, 20, 12, tzinfo=timezone.utc).timestamp())
GB = 1_000_000_000
REF = "acmeaaaaaaaaaaaaaaaa"


class Billing:
    """The free plan's quotas, as billing's get_entitlements returns them."""

    def get_entitlements(self, org_slug: str) -> dict[str, Any]:
        return {"plan": "free", "max_projects": 2, "quotas": {
            "egress_bytes": {"included": 5 * GB, "unit": GB, "overage_price": None, "limit": "hard"},
            "db_size_bytes": {"included": GB // 2, "unit": GB, "overage_price": None, "limit": "hard"},
            "api_requests": {"included": None, "unit": 1_000_000, "overage_price": None, "limit": "soft"}}}


class Orgs:
    def list_org_members(self, slug: str, roles: list[str]) -> list[dict[str, Any]]:
        members = [{"email": "owner@acme.test", "role": "owner"}, {"email": "admin@acme.test", "role": "admin"},
                   {"email": "member@acme.test", "role": "member"}]
        return [m for m in members if m["role"] in roles]


class Mailbox:
    def __init__(self) -> None:
        self.sent: list[Mail] = []

    def send(self, mail: Mail) -> None:
        self.sent.append(mail)


@pytest.fixture(scope="module")
def db_settings() -> Iterator[Settings]:
    s = make_test_settings("alerts")
    ensure_database(s)
    ensure_schema(s, SCHEMA, DDL)
    try:
        yield s
    finally:
        drop_database(s)


@pytest.fixture
def app(db_settings: Settings) -> Iterator[MeteringApplication]:
    pool = make_pool(db_settings, SCHEMA, DDL, max_size=2)
    a = open_application(MeteringApplication, db_settings, in_memory=True)
    a.usage = UsageStore(pool)
    a.usage.reset()
    with pool.connection() as conn:
        conn.execute("DELETE FROM metering.processed_messages")
    a.mailer = Mailbox()
    a.clock = lambda: NOW  # type: ignore[method-assign]
    try:
        yield a
    finally:
        a.close()


def egress(app: MeteringApplication, quantity: int, at: int = NOW) -> None:
    app.record_usage("test", [("acme", REF, "egress_bytes", at, quantity)])


def published(app: MeteringApplication) -> list[dict[str, Any]]:
    """What the relay would publish from the store: the alert messages."""
    out = []
    for n in app.recorder.select_notifications(start=1, limit=1000):
        e = app.mapper.to_domain_event(n)
        msg = to_message(e)
        if msg is not None:
            out.append(parse_message(build_message(msg, event_id=event_id_for("metering", e.originator_id,
                                                                                e.originator_version),
                                                   producer="metering", producer_position=n.id,
                                                   occurred_at=e.timestamp)))
    return out


def test_the_80_percent_alert_fires_once(app: MeteringApplication) -> None:
    # 3 GB of the free plan's 5 GB egress: 60 %, past the 50 % threshold only.
    egress(app, 3 * GB)
    assert [(a["metric"], a["threshold_percent"]) for a in app.check_alerts(Billing())] == [("egress_bytes", 50)]

    # 4.2 GB: 84 %. The 80 % alert fires, once, however often usage is checked.
    egress(app, int(1.2 * GB))
    first = app.check_alerts(Billing())
    assert [(a["kind"], a["metric"], a["threshold_percent"], a["quantity"]) for a in first] == [
        ("quota", "egress_bytes", 80, int(4.2 * GB))]
    assert app.check_alerts(Billing()) == []  # nothing changed: nothing checked
    egress(app, 1000)  # more usage, still under 100 %: checked again, no new alert
    assert app.check_alerts(Billing()) == []
    app.usage.mark_changed(["acme"])
    assert app.check_alerts(Billing()) == []
    assert [a["threshold_percent"] for a in app.list_alerts("acme")] == [80, 50]

    messages = [m for m in published(app) if m["payload"]["threshold_percent"] == 80]
    assert len(messages) == 1
    assert messages[0]["org_id"] == "acme" and messages[0]["payload"]["period_start"].isoformat().startswith("2024-03-01")


def test_a_new_billing_period_alerts_again(app: MeteringApplication) -> None:
    egress(app, 4 * GB + GB // 2)
    assert [a["threshold_percent"] for a in app.check_alerts(Billing())] == [50, 80]
    april = int(datetime(2024, 4, 2, tzinfo=timezone.utc).timestamp())
    app.clock = lambda: april  # type: ignore[method-assign]
    egress(app, 3 * GB, at=april)
    assert [(a["threshold_percent"], a["period_start"]) for a in app.check_alerts(Billing())] == [
        (50, int(datetime(2024, 4, 1, tzinfo=timezone.utc).timestamp()))]


def test_owners_and_admins_are_mailed_once_per_alert(app: MeteringApplication) -> None:
    egress(app, 5 * GB)  # 100 %: three thresholds at once
    app.check_alerts(Billing())
    messages = published(app)
    assert [m["payload"]["threshold_percent"] for m in messages] == [50, 80, 100]
    for m in messages:
        assert app.notify_alert(m, Orgs()) is True
        assert app.notify_alert(m, Orgs()) is False  # a redelivered message mails nobody again
    sent = app.mailer.sent  # type: ignore[attr-defined]
    assert sorted({m.to for m in sent}) == ["admin@acme.test", "owner@acme.test"]
    assert len(sent) == 6
    assert "100% of its egress_bytes plan quota" in sent[-1].subject
    assert "5.00 GB used of 5.00 GB" in sent[-1].body


def test_project_budgets_alert_at_their_thresholds(app: MeteringApplication) -> None:
    app.set_budget("acme", REF, "api_requests", 1000)
    assert app.list_budgets("acme", REF) == [{"project_ref": REF, "metric": "api_requests", "limit": 1000}]
    app.record_usage("test", [("acme", REF, "api_requests", NOW, 810)])
    alerts = app.check_alerts(Billing())  # api_requests has no quota (included null): budget alerts only
    assert [(a["kind"], a["project_ref"], a["threshold_percent"]) for a in alerts] == [
        ("budget", REF, 50), ("budget", REF, 80)]
    # Lowering the budget below what is used: the next check sees the crossing without new usage.
    app.set_budget("acme", REF, "api_requests", 800)
    assert [(a["threshold_percent"], a["limit"]) for a in app.check_alerts(Billing())] == [(100, 800)]
    app.remove_budget("acme", REF, "api_requests")
    assert app.list_budgets("acme", REF) == []


def test_a_second_record_of_the_same_crossing_is_refused_by_the_store(app: MeteringApplication) -> None:
    # Another checker racing on the same crossing cannot record it again: the alert's id is
    # uuid5 of its natural key, so the event store refuses the duplicate.
    egress(app, 4 * GB)
    app.check_alerts(Billing())
    start = int(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp())
    duplicate = UsageAlert(org_slug="acme", project_ref=None, metric="egress_bytes", kind="quota",
                           threshold_percent=80, limit=5 * GB, quantity=4 * GB, period_start=start,
                           period_end=start + 1)
    assert duplicate.id == uuid.UUID(app.list_alerts("acme")[0]["id"])
    with pytest.raises(IntegrityError):
        app.save(duplicate)
