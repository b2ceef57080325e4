"""billing application scenarios on the in-memory store and on PostgreSQL, with fake orgs,
projects and usage ports (the real ones are exercised end to end in the integration tests),
the real local payments adapter and the real Stripe webhook signature check."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from services.billing import rating
from services.billing.adapters import LocalPayments, StripeWebhooks
from services.billing.application import BillingApplication
from services.billing.bootstrap import build
from services.billing.plans import CONFIG, load_plans
from services.shared.db import bootstrap, drop_database
from services.shared.errors import Conflict, Forbidden, InvalidInput, LimitExceeded, NotFound
from tests.conftest import make_test_settings
from tests.support import FakeOrgs

GB = 10**9
WEBHOOK_SECRET = "whsec_unit_test_secret"


class FakeProjects:
    def __init__(self) -> None:
        self.projects: list[dict[str, Any]] = []

    def add(self, slug: str, status: str = "ACTIVE_HEALTHY") -> None:
        self.projects.append({"ref": uuid.uuid4().hex[:20], "organization_slug": slug, "status": status})

    def list_projects(self, user_id: str) -> list[dict[str, Any]]:
        return [dict(p) for p in self.projects]


class FakeUsage:
    """metering's period_totals: per (org, period start) the totals it would answer."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], dict[str, int]] = {}
        self.calls: list[tuple[str, str, str]] = []

    def set(self, slug: str, period: str, **totals: int) -> None:
        self.totals[(slug, period)] = totals

    def period_totals(self, org_slug: str, start_iso: str, end_iso: str) -> dict[str, int]:
        self.calls.append((org_slug, start_iso, end_iso))
        for t in (start_iso, end_iso):  # as metering: usage is aggregated by the hour
            if datetime.fromisoformat(t).replace(minute=0, second=0, microsecond=0) != datetime.fromisoformat(t):
                raise InvalidInput("start and end must be on the hour (usage is aggregated by hour)")
        return dict(self.totals.get((org_slug, start_iso[:7]), {}))


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def set(self, *args: int) -> None:
        self.at = datetime(*args, tzinfo=timezone.utc)  # type: ignore[misc]


@pytest.fixture(scope="module")
def pg_settings() -> Iterator[Any]:
    s = make_test_settings("billing")
    bootstrap(s)
    yield s
    drop_database(s)


@pytest.fixture(params=["memory", "postgres"])
def world(request: Any, pg_settings: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    app = build(pg_settings, in_memory=request.param == "memory")
    clock = Clock(datetime(2026, 1, 2, 9, tzinfo=timezone.utc))
    app.clock = clock
    orgs, projects, usage = FakeOrgs(), FakeProjects(), FakeUsage()
    owner, admin, member = (str(uuid.uuid4()) for _ in range(3))
    slug = "org-" + uuid.uuid4().hex[:8]
    for uid, role in ((owner, "owner"), (admin, "admin"), (member, "member")):
        orgs.roles[(uid, slug)] = role
    w = {"app": app, "clock": clock, "orgs": orgs, "projects": projects, "usage": usage, "owner": owner,
         "admin": admin, "member": member, "slug": slug, "payments": LocalPayments(tmp_path / "invoices"),
         "tmp": tmp_path}
    start(w)
    yield w
    app.close()


def start(w: dict[str, Any], slug: str | None = None, at: str = "2025-12-01T09:00:00+00:00") -> dict[str, Any]:
    envelope = {"event_id": str(uuid.uuid4()), "occurred_at": at, "correlation_id": None,
                "payload": {"slug": slug or w["slug"]}}
    assert w["app"].start_subscription(envelope) is True
    return envelope


def change(w: dict[str, Any], plan: str, who: str = "owner", **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = w["app"].change_plan(w[who], w["slug"], {"plan": plan, **body}, w["orgs"],
                                                  w["projects"], body.pop("key", None))
    return result


def preview(w: dict[str, Any], plan: str, who: str = "owner", **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = w["app"].preview_change(w[who], w["slug"], {"plan": plan, **body}, w["orgs"],
                                                     w["projects"], w["usage"])
    return result


def close(w: dict[str, Any], period: str, payments: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = w["app"].close_period(w["slug"], period, w["usage"], payments)
    return result


def amounts(invoice: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(line["kind"], line["metric"] or line["plan"], line["amount"]) for line in invoice["lines"]]


# -- plans and entitlements -----------------------------------------------------------------------

def test_a_new_organization_is_on_free_with_the_entitlements_plans_yaml_defines(world: dict[str, Any]) -> None:
    app: BillingApplication = world["app"]
    raw = yaml.safe_load(CONFIG.read_text())["plans"]
    ent = app.get_entitlements(world["slug"])
    assert ent["plan"] == "free" and ent["max_projects"] == 2 and ent["spend_cap"] is True
    assert ent["price_monthly"] == 0 and ent["quotas"] == raw["free"]["quotas"]
    # An org billing has not heard of yet (its organization_created still in flight) is on free.
    assert app.get_entitlements("not-seen-yet")["plan"] == "free"
    with pytest.raises(NotFound):
        app.get_subscription("not-seen-yet")
    plans = app.list_plans()
    assert [p["plan"] for p in plans] == ["free", "pro", "team", "enterprise"]
    assert {p["plan"]: p["spend_cap_adjustable"] for p in plans} == {"free": False, "pro": True, "team": False,
                                                                    "enterprise": False}
    pro = next(p for p in plans if p["plan"] == "pro")
    assert pro["price_monthly"] == 25 and pro["quotas"]["egress_bytes"] == raw["pro"]["quotas"]["egress_bytes"]


def test_plans_file_problems_are_named(tmp_path: Path) -> None:
    bad = yaml.safe_load(CONFIG.read_text())
    bad["plans"]["pro"]["quotas"]["egress_bytes"]["limit"] = "sometimes"
    path = tmp_path / "plans.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="plan pro: quota egress_bytes: limit is hard or soft"):
        load_plans(path)


# -- subscriptions: dry run, change, proration -------------------------------------------------------

def test_downgrade_dry_run_names_the_limits_the_new_plan_would_break(world: dict[str, Any]) -> None:
    w, slug = world, world["slug"]
    w["clock"].set(2026, 1, 10)
    change(w, "pro", spend_cap=False)
    for _ in range(3):
        w["projects"].add(slug)
    w["projects"].add(slug, "INACTIVE")  # a paused project does not count
    w["projects"].add("someone-else")  # nor does another organization's
    w["usage"].set(slug, "2026-01", egress_bytes=6 * GB, db_size_bytes=600_000_000, function_invocations=10)
    w["clock"].set(2026, 1, 21)

    dry = preview(w, "free")
    assert dry["change"] == "downgrade" and dry["allowed"] is False and dry["usage_checked"] is True
    assert dry["active_projects"] == 3
    broken = {b["limit"]: b for b in dry["broken_limits"]}
    assert set(broken) == {"max_projects", "quotas.egress_bytes", "quotas.db_size_bytes"}
    assert (broken["max_projects"]["current"], broken["max_projects"]["allowed"], broken["max_projects"]["effect"]) \
        == (3, 2, "refused")
    assert "free plan allows at most 2 active projects" in broken["max_projects"]["message"]
    assert broken["quotas.egress_bytes"]["effect"] == "restricted"
    assert "Egress this period (6 GB) is past the free plan's 5 GB" in broken["quotas.egress_bytes"]["message"]
    assert broken["quotas.db_size_bytes"]["allowed"] == 500_000_000
    # 11 of January's 31 days left: a credit of 25 * 11/31 = 8.870967... -> 8.87.
    assert dry["proration"]["amount"] == "-8.87"
    changed = {c["entitlement"]: (c["from"], c["to"]) for c in dry["changes"]}
    assert changed["max_projects"] == (None, 2) and changed["price_monthly"] == (25, 0)
    assert changed["quotas.egress_bytes.included"] == (250 * GB, 5 * GB)
    # A dry run changes nothing.
    assert w["app"].get_subscription(slug)["plan"] == "pro"

    # The real downgrade is refused (402) naming the limit and the plan ...
    with pytest.raises(LimitExceeded, match="the free plan allows at most 2 active projects .* 3 active"):
        change(w, "free")
    assert w["app"].get_subscription(slug)["plan"] == "pro"
    # ... until a project is paused; usage past free's quotas does not block (it restricts).
    w["projects"].projects[0]["status"] = "INACTIVE"
    done = change(w, "free")
    assert done["subscription"]["plan"] == "free" and done["proration"]["amount"] == "-8.87"
    assert w["app"].get_entitlements(slug)["max_projects"] == 2


def test_upgrade_mid_period_is_prorated_exactly_on_the_invoice(world: dict[str, Any]) -> None:
    w = world
    w["clock"].set(2026, 1, 16)
    dry = preview(w, "pro")
    # 16 of 31 days left on 25.00: 12.903225... -> 12.90.
    assert dry["change"] == "upgrade" and dry["allowed"] and dry["proration"]["amount"] == "12.90"
    change(w, "pro")
    assert w["app"].get_subscription(w["slug"])["spend_cap"] is True  # pro's default
    w["clock"].set(2026, 2, 1, 0, 5)
    invoice = close(w, "2026-01")
    assert amounts(invoice) == [("base", "free", "0.00"), ("base", "pro", "12.90")]
    assert invoice["total"] == "12.90" and invoice["rated_plan"] == "pro"
    assert invoice["lines"][1]["description"] == "Pro plan, 2026-01-16 to 2026-02-01 (prorated)"


def test_invoice_for_a_month_with_overage_has_the_right_lines_and_total(world: dict[str, Any]) -> None:
    w, slug = world, world["slug"]
    w["clock"].set(2025, 12, 20)
    change(w, "pro", spend_cap=False)
    # January on pro, all month. Gauges are peaks, counters sums (metering's business).
    w["usage"].set(slug, "2026-01", db_size_bytes=10 * GB, egress_bytes=262_500_000_000, storage_bytes=100_500_000_000,
                   function_invocations=3_500_000, realtime_messages=5_000_000, api_requests=12_345_678)
    w["clock"].set(2026, 2, 1, 3)
    invoice = close(w, "2026-01", w["payments"])
    assert amounts(invoice) == [
        ("base", "pro", "25.00"),
        ("overage", "db_size_bytes", "0.25"),  # 2 GB x 0.125
        ("overage", "egress_bytes", "1.13"),  # 12.5 GB x 0.09 = 1.125, half up
        ("overage", "storage_bytes", "0.01"),  # 0.5 GB x 0.021 = 0.0105
        ("overage", "function_invocations", "3.00"),  # 1.5 million x 2
    ]  # realtime exactly at its quota, api requests unpriced: no lines
    assert invoice["total"] == "29.39"
    assert sum(Decimal(line["amount"]) for line in invoice["lines"]) == Decimal(invoice["total"])
    egress = invoice["lines"][2]
    assert (egress["line"], egress["quantity"], egress["unit"], egress["unit_price"]) == (3, 12_500_000_000, GB, "0.09")
    assert egress["description"] == "Egress: 12.5 GB beyond 250 GB included, at $0.09 per GB"
    assert invoice["period_start"] == "2026-01-01T00:00:00+00:00" and invoice["period_end"] == "2026-02-01T00:00:00+00:00"
    # metering was asked for exactly the month, half open.
    assert (slug, "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00") in w["usage"].calls
    # The local provider recorded it (no network) and nothing is collected: open.
    assert invoice["status"] == "open" and invoice["provider"] == "local"
    written = json.loads((w["tmp"] / "invoices" / slug / "2026-01.json").read_text())
    assert written["total"] == "29.39" and written["id"] == invoice["id"]
    # Listed for owners and admins, newest first, without lines.
    listed = w["app"].list_invoices(w["admin"], slug, w["orgs"])
    assert [(i["period"], i["total"]) for i in listed] == [("2026-01", "29.39")] and "lines" not in listed[0]
    assert w["app"].get_invoice(w["owner"], slug, invoice["id"], w["orgs"]) == invoice


def test_with_the_spend_cap_on_overage_is_not_billed(world: dict[str, Any]) -> None:
    w, slug = world, world["slug"]
    w["clock"].set(2025, 12, 20)
    change(w, "pro")  # cap on by default
    w["usage"].set(slug, "2026-01", egress_bytes=300 * GB)
    w["clock"].set(2026, 2, 2)
    invoice = close(w, "2026-01")
    assert amounts(invoice) == [("base", "pro", "25.00"), ("overage", "egress_bytes", "0.00")]
    assert invoice["lines"][1]["description"].endswith("(not billed: spend cap on)") and invoice["total"] == "25.00"


def test_a_closed_invoice_never_changes_and_late_usage_is_corrected_on_the_next(world: dict[str, Any]) -> None:
    w, slug = world, world["slug"]
    w["clock"].set(2025, 12, 20)
    change(w, "pro", spend_cap=False)
    w["usage"].set(slug, "2026-01", egress_bytes=260 * GB)
    w["clock"].set(2026, 2, 1, 1)
    january = close(w, "2026-01", w["payments"])
    assert amounts(january)[1:] == [("overage", "egress_bytes", "0.90")]

    # Late usage for January arrives after it closed; closing January again changes nothing.
    w["usage"].set(slug, "2026-01", egress_bytes=275 * GB)
    assert close(w, "2026-01", w["payments"]) == january
    assert w["app"].get_invoice(w["owner"], slug, january["id"], w["orgs"]) == january

    # February's invoice carries the correction: 15 GB more at 0.09 = 1.35.
    w["usage"].set(slug, "2026-02", egress_bytes=100 * GB)
    w["clock"].set(2026, 3, 1, 1)
    february = close(w, "2026-02", w["payments"])
    assert amounts(february) == [("base", "pro", "25.00"), ("correction", "egress_bytes", "1.35")]
    corr = february["lines"][1]
    assert corr["corrects"] == "2026-01" and corr["quantity"] == 15 * GB and february["total"] == "26.35"
    assert w["app"].get_invoice(w["owner"], slug, january["id"], w["orgs"]) == january
    assert [i["period"] for i in w["app"].list_invoices(w["owner"], slug, w["orgs"])] == ["2026-02", "2026-01"]


def test_closing_refuses_an_unended_or_malformed_period(world: dict[str, Any]) -> None:
    w = world
    w["clock"].set(2026, 1, 31, 23, 59)
    with pytest.raises(Conflict, match="period 2026-01 has not ended yet"):
        close(w, "2026-01")
    with pytest.raises(InvalidInput, match="period"):
        close(w, "2026-13")
    w["clock"].set(2026, 3, 1)
    with pytest.raises(InvalidInput, match="started after 2025-11 ended"):
        close(w, "2025-11")
    with pytest.raises(NotFound):
        w["app"].close_period("no-such-org", "2026-01", w["usage"])


def test_free_invoices_are_settled_at_once_and_never_sent(world: dict[str, Any]) -> None:
    w = world
    w["usage"].set(w["slug"], "2026-01", egress_bytes=7 * GB)  # past free's hard limit: restricted, not billed
    w["clock"].set(2026, 2, 1, 1)
    invoice = close(w, "2026-01", w["payments"])
    assert amounts(invoice) == [("base", "free", "0.00")] and invoice["status"] == "paid"
    assert invoice["provider"] is None and not (w["tmp"] / "invoices").exists()


def test_close_due_periods_closes_last_month_for_every_organization_once(world: dict[str, Any]) -> None:
    w = world
    late = w["slug"] + "-late"
    start(w, slug=late, at="2026-02-10T00:00:00+00:00")  # did not exist in January
    w["orgs"].roles[(w["owner"], late)] = "owner"
    w["clock"].set(2026, 2, 15)
    first = w["app"].close_due_periods(w["usage"], w["payments"])
    assert first["closed"] >= 1 and first["failed"] == 0  # on PostgreSQL, other tests' orgs too
    assert [i["period"] for i in w["app"].list_invoices(w["owner"], w["slug"], w["orgs"])] == ["2026-01"]
    assert w["app"].list_invoices(w["owner"], late, w["orgs"]) == []
    # Run again (the timer does, hourly): nothing left to do.
    assert w["app"].close_due_periods(w["usage"], w["payments"]) == {"closed": 0, "submitted": 0, "failed": 0}


def test_spend_cap_is_only_adjustable_where_the_plan_allows(world: dict[str, Any]) -> None:
    w = world
    with pytest.raises(InvalidInput, match="spend_cap: the free plan's spend cap is always on"):
        change(w, "free", spend_cap=False)
    with pytest.raises(InvalidInput, match="spend_cap: the team plan's spend cap is always off"):
        change(w, "team", spend_cap=True)
    with pytest.raises(InvalidInput, match="plan: one of free, pro, team, enterprise"):
        change(w, "platinum")
    change(w, "pro")
    out = change(w, "pro", spend_cap=False)
    assert out["subscription"]["spend_cap"] is False and out["changes"] == [
        {"entitlement": "spend_cap", "from": True, "to": False}]
    assert w["app"].get_entitlements(w["slug"])["spend_cap"] is False
    # Asking for what is already the case changes nothing.
    assert change(w, "pro")["subscription"]["history"] == out["subscription"]["history"]


def test_idempotency_key_replays_the_first_result(world: dict[str, Any]) -> None:
    w = world
    first = change(w, "pro", key="k-1")
    w["clock"].set(2026, 1, 20)
    again = change(w, "pro", key="k-1")
    assert again == first
    assert len(w["app"].get_subscription(w["slug"])["history"]) == 2
    with pytest.raises(Conflict, match="Idempotency-Key was already used with a different request body"):
        change(w, "team", key="k-1")


def test_who_may_read_and_change_billing(world: dict[str, Any]) -> None:
    w, slug, app = world, world["slug"], world["app"]
    assert app.subscription_for(w["member"], slug, w["orgs"])["plan"] == "free"
    w["clock"].set(2026, 1, 5, 10, 17)
    dry = preview(w, "pro", who="member")
    assert dry["allowed"] is True and dry["usage_checked"] is True
    # Usage so far is asked up to the end of the current hour (metering's granularity).
    assert w["usage"].calls[-1] == (slug, "2026-01-01T00:00:00+00:00", "2026-01-05T11:00:00+00:00")
    with pytest.raises(Forbidden):
        change(w, "pro", who="admin")
    with pytest.raises(Forbidden):
        app.list_invoices(w["member"], slug, w["orgs"])
    with pytest.raises(NotFound):  # non-members are told nothing exists
        app.subscription_for(str(uuid.uuid4()), slug, w["orgs"])
    # An invoice id of another organization is not found through this one.
    other = "org-" + uuid.uuid4().hex[:8]
    start(w, slug=other)
    w["clock"].set(2026, 2, 2)
    theirs = app.close_period(other, "2026-01", w["usage"])
    with pytest.raises(NotFound):
        app.get_invoice(w["owner"], slug, theirs["id"], w["orgs"])
    with pytest.raises(NotFound):
        app.get_invoice(w["owner"], slug, "not-a-uuid", w["orgs"])


def test_usage_past_a_restricting_quota_is_refused_with_a_clear_reason(world: dict[str, Any]) -> None:
    w, slug = world, world["slug"]
    w["clock"].set(2026, 1, 20)
    w["usage"].set(slug, "2026-01", function_invocations=500_001, egress_bytes=GB)
    out = w["app"].check_usage(slug, w["usage"])
    assert [r["metric"] for r in out["restricted"]] == ["function_invocations"]
    with pytest.raises(LimitExceeded, match="Function invocations this period is past the free plan's quota"):
        w["app"].check_usage(slug, w["usage"], "function_invocations")
    w["app"].check_usage(slug, w["usage"], "egress_bytes")  # within quota: allowed
    change(w, "pro", spend_cap=False)
    assert w["app"].check_usage(slug, w["usage"])["restricted"] == []


# -- Stripe webhooks ---------------------------------------------------------------------------------

def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[str, str]:
    """A delivery as Stripe signs it: v1 = HMAC-SHA256 of "<t>.<payload>" with the endpoint secret."""
    payload = json.dumps(event)
    t = int(time.time()) if at is None else at
    sig = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return payload, f"t={t},v1={sig}"


def stripe_event(event_id: str, kind: str, invoice_id: str, created: int) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": kind, "created": created, "api_version": "2026-10-28.endive",
            "data": {"object": {"id": "in_123", "object": "invoice", "metadata": {"platform_invoice_id": invoice_id}}}}


def test_signed_webhooks_apply_once_refuse_bad_signatures_and_tolerate_disorder(world: dict[str, Any]) -> None:
    w, app = world, world["app"]
    verifier = StripeWebhooks(WEBHOOK_SECRET)
    w["clock"].set(2025, 12, 20)
    change(w, "pro")
    w["clock"].set(2026, 2, 1, 1)
    invoice = close(w, "2026-01", w["payments"])
    assert invoice["status"] == "open"

    # Delivered out of order: the later "paid" first, then the earlier "payment_failed".
    paid = stripe_event("evt_paid", "invoice.paid", invoice["id"], 1_770_000_200)
    failed = stripe_event("evt_failed", "invoice.payment_failed", invoice["id"], 1_770_000_100)
    assert app.receive_provider_event(*signed(paid), verifier) == {"received": True, "duplicate": False,
                                                                  "applied": True, "outcome": "applied"}
    again = app.receive_provider_event(*signed(paid), verifier)  # Stripe retries: a no-op
    assert again == {"received": True, "duplicate": True, "applied": False}
    late = app.receive_provider_event(*signed(failed), verifier)
    assert late["applied"] is False and late["outcome"] == "stale"
    assert app.get_invoice(w["owner"], w["slug"], invoice["id"], w["orgs"])["status"] == "paid"

    # A bad signature, a wrong secret, an old timestamp: refused (the gateway answers 400).
    payload, header = signed(stripe_event("evt_x", "invoice.paid", invoice["id"], 1))
    with pytest.raises(InvalidInput, match="Stripe-Signature"):
        app.receive_provider_event(payload, header.replace("v1=", "v1=00"), verifier)
    with pytest.raises(InvalidInput, match="Stripe-Signature"):
        app.receive_provider_event(*signed(stripe_event("evt_y", "invoice.paid", invoice["id"], 1), "whsec_other"),
                                   verifier)
    with pytest.raises(InvalidInput, match="Stripe-Signature"):
        app.receive_provider_event(*signed(stripe_event("evt_z", "invoice.paid", invoice["id"], 1),
                                           at=int(time.time()) - 3600), verifier)
    with pytest.raises(InvalidInput, match="not configured"):
        app.receive_provider_event(*signed(paid), None)
    # Events that concern no invoice of ours are acknowledged and recorded, not applied.
    other = app.receive_provider_event(*signed(stripe_event("evt_c", "customer.created", "", 5)), verifier)
    assert other["outcome"] == "ignored"

    # Exactly one public status change came out of all this.
    changes = [e for e in app.repository.event_store.get(uuid.UUID(invoice["id"]))
               if type(e).__name__ == "PaymentUpdated"]
    assert [(e.previous_status, e.status, e.source) for e in changes] == [("open", "paid", "stripe")]


def test_failed_then_paid_in_order_moves_the_invoice_forward(world: dict[str, Any]) -> None:
    w, app = world, world["app"]
    verifier = StripeWebhooks(WEBHOOK_SECRET)
    w["clock"].set(2025, 12, 20)
    change(w, "pro")
    w["clock"].set(2026, 2, 1, 1)
    invoice = close(w, "2026-01")
    app.receive_provider_event(*signed(stripe_event("e1", "invoice.payment_failed", invoice["id"], 100)), verifier)
    assert app.get_invoice(w["owner"], w["slug"], invoice["id"], w["orgs"])["status"] == "payment_failed"
    app.receive_provider_event(*signed(stripe_event("e2", "invoice.payment_succeeded", invoice["id"], 200)), verifier)
    assert app.get_invoice(w["owner"], w["slug"], invoice["id"], w["orgs"])["status"] == "paid"


# -- arithmetic ----------------------------------------------------------------------------------------

def test_periods_are_calendar_months_in_utc() -> None:
    assert rating.period_bounds("2025-12") == (datetime(2025, 12, 1, tzinfo=timezone.utc),
                                               datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert rating.previous_period("2026-01") == "2025-12" and rating.previous_period("2026-03") == "2026-02"
    with pytest.raises(ValueError):
        rating.period_bounds("2026-1")


def test_proration_uses_exact_decimals() -> None:
    plans = load_plans()
    start, end = rating.period_bounds("2026-02")  # 28 days
    at = datetime(2026, 2, 15, tzinfo=timezone.utc)
    assert rating.proration(plans, "free", "team", at, start, end) == Decimal("299.50")  # 599 * 14/28
    assert rating.proration(plans, "pro", "free", at, start, end) == Decimal("-12.50")
    assert rating.proration(plans, "free", "pro", end, start, end) == Decimal("0.00")
