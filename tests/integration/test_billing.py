"""Billing end to end on the running platform: the free plan's project limit through the
gateway, plan changes (dry run, refusal naming the limit, the plan_changed event), closing a
period with `platformctl billing close-period` (billing calling metering's real
period_totals) into an invoice that never changes, and Stripe webhooks through the gateway.

A period can only be invoiced once it has ended, and a new organization did not exist in
any ended month, so the period-close tests start from an organization whose billing began
two months ago: its Subscription is saved into billing's store first (as billing itself
would have, back then), then orgs creates the organization under that slug.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from services.billing import rating
from services.billing.application import BillingApplication
from services.billing.domain import Subscription
from services.shared import broker
from services.shared.platformctl import main as platformctl
from services.shared.settings import Settings, settings_env
from tests.support import wait_for

WEBHOOK = "/platform/billing/stripe/webhook"


def last_month() -> str:
    return rating.previous_period(rating.period_of(datetime.now(timezone.utc)))


def new_org(http: Any, token: str, name: str) -> str:
    r = http.post("/v1/organizations", token=token, json={"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["slug"])


def save_backdated_subscription(settings: Settings, slug: str) -> None:
    """billing's Subscription for `slug`, on pro with the cap off since two months ago, saved
    straight into billing's store (through its application, with one connection: the
    running platform already holds many)."""
    began, _ = rating.period_bounds(rating.previous_period(last_month()))
    billing = BillingApplication(env={**settings.eventstore_env(BillingApplication.name), "POSTGRES_POOL_SIZE": "1",
                                      "POSTGRES_MAX_OVERFLOW": "0"})
    try:
        billing.save(Subscription(org_slug=slug, plan="pro", spend_cap=False, started_at=rating.iso(began),
                                  source_event_id=str(uuid.uuid4()), meta={}))
    finally:
        billing.close()


def backdated_pro_org(settings: Settings, rpc: Any, http: Any, user: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """An organization of `user` on pro (spend cap off) since two months ago, with last
    month closed into its invoice; returns (slug, invoice as the gateway shows it)."""
    name = f"Billing {uuid.uuid4().hex[:10]}"
    slug = name.lower().replace(" ", "-")
    save_backdated_subscription(settings, slug)
    assert rpc.orgs.create_organization(user["user_id"], name)["slug"] == slug
    invoice = rpc.billing.close_period(slug, last_month())
    r = http.get(f"/platform/organizations/{slug}/billing/invoices/{invoice['id']}", token=user["token"])
    assert r.status_code == 200, r.text
    return slug, r.json()


def signed(event: dict[str, Any], secret: str) -> tuple[str, dict[str, str]]:
    payload = json.dumps(event)
    t = int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return payload, {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


def stripe_event(kind: str, invoice_id: str, created: int | None = None) -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": kind,
            "created": created or int(time.time()),
            "data": {"object": {"id": "in_test", "object": "invoice", "metadata": {"platform_invoice_id": invoice_id}}}}


# -- enforcement ----------------------------------------------------------------------------------

def test_the_free_plan_refuses_a_third_active_project_through_the_gateway(http: Any, user_token: dict[str, str]) -> None:
    token = user_token["token"]
    slug = new_org(http, token, f"Free {uuid.uuid4().hex[:8]}")
    body = {"name": "app", "organization_slug": slug, "db_pass": "a tenant password", "region": "eu-west-1"}
    for i in range(2):
        r = http.post("/v1/projects", token=token, json={**body, "name": f"app {i}"})
        assert r.status_code == 201, r.text
    r = http.post("/v1/projects", token=token, json={**body, "name": "one too many"})
    assert r.status_code == 402, r.text
    message = r.json()["message"]
    assert "free plan allows at most 2 active projects" in message and "upgrade the plan" in message
    r = http.get(f"/platform/organizations/{slug}/billing/subscription", token=token)
    assert r.status_code == 200 and r.json()["plan"] == "free" and r.json()["entitlements"]["max_projects"] == 2


# -- plan changes -----------------------------------------------------------------------------------

@pytest.fixture
def billing_events(settings: Settings) -> Any:
    """A queue bound to everything billing publishes; returns a reader of its messages."""
    conn = broker.connect(settings)
    channel = conn.channel()
    name = f"test.billing.{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=False, auto_delete=False)
    channel.queue_bind(name, broker.declare_exchange(channel, "billing"), "#")

    def read() -> list[dict[str, Any]]:
        out = []
        while (m := channel.basic_get(name, no_ack=True)) is not None:
            out.append(json.loads(m.body))
        return out

    yield read
    channel.queue_delete(name)
    conn.close()


def test_upgrade_then_a_downgrade_dry_run_names_the_broken_limit_and_the_downgrade_is_refused(
        http: Any, rpc: Any, user_token: dict[str, str], billing_events: Callable[[], list[dict[str, Any]]]) -> None:
    token = user_token["token"]
    slug = new_org(http, token, f"Growing {uuid.uuid4().hex[:8]}")
    base = f"/platform/organizations/{slug}/billing/subscription"
    plans = http.get("/platform/billing/plans")
    assert plans.status_code == 200 and [p["plan"] for p in plans.json()][:2] == ["free", "pro"]

    # Upgrade (owner), retried with the same Idempotency-Key: one change.
    headers = {"Idempotency-Key": f"up-{slug}"}
    r = http.request("PUT", base, token=token, json={"plan": "pro", "spend_cap": False}, headers=dict(headers))
    assert r.status_code == 200, r.text
    assert r.json()["subscription"]["plan"] == "pro" and r.json()["subscription"]["spend_cap"] is False
    again = http.request("PUT", base, token=token, json={"plan": "pro", "spend_cap": False}, headers=dict(headers))
    assert again.status_code == 200 and again.json() == r.json()
    assert http.get(f"/v1/organizations/{slug}", token=token).json()["plan"] == "pro"

    # The relay publishes the change as plan_changed (once).
    def changed() -> list[dict[str, Any]]:
        return [m for m in billing_events() if m["event_type"] == "plan_changed" and m["org_id"] == slug]
    seen = wait_for("plan_changed on billing.events", changed)
    assert len(seen) == 1 and seen[0]["payload"]["previous_plan"] == "free" and seen[0]["payload"]["plan"] == "pro"

    # Three active projects: more than free allows.
    body = {"organization_slug": slug, "db_pass": "a tenant password", "region": "eu-west-1"}
    for i in range(3):
        assert http.post("/v1/projects", token=token, json={**body, "name": f"p{i}"}).status_code == 201

    r = http.post(f"{base}/preview", token=token, json={"plan": "free"})
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["change"] == "downgrade" and dry["allowed"] is False and dry["active_projects"] == 3
    limit = next(b for b in dry["broken_limits"] if b["limit"] == "max_projects")
    assert (limit["current"], limit["allowed"], limit["effect"]) == (3, 2, "refused")
    assert dry["usage_checked"] is True, dry["note"]  # metering's period_totals answered
    assert dry["proration"]["amount"].startswith("-")  # a credit for the rest of the month

    r = http.request("PUT", base, token=token, json={"plan": "free"})
    assert r.status_code == 402, r.text
    assert "the free plan allows at most 2 active projects per organization" in r.json()["message"]
    assert http.get(base, token=token).json()["plan"] == "pro"

    # Someone outside the organization sees nothing of it.
    stranger_email = f"stranger-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(stranger_email, "correct horse battery")
    stranger = rpc.orgs.issue_token(stranger_email, "tests")["token"]
    assert http.get(base, token=stranger).status_code == 404
    assert http.post(f"{base}/preview", token=stranger, json={"plan": "free"}).status_code == 404


# -- period close and invoices -----------------------------------------------------------------------

def test_platformctl_closes_a_period_into_an_invoice_that_never_changes(
        settings: Settings, rpc: Any, http: Any, user_token: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    name = f"Billing {uuid.uuid4().hex[:10]}"
    slug = name.lower().replace(" ", "-")
    save_backdated_subscription(settings, slug)
    assert rpc.orgs.create_organization(user_token["user_id"], name)["slug"] == slug
    for k, v in settings_env(settings).items():
        monkeypatch.setenv(k, v)

    capsys.readouterr()
    assert platformctl(["billing", "close-period", "--org", slug, "--period", last_month()]) == 0
    out = capsys.readouterr().out
    assert f"{slug} {last_month()} on pro: 25.00 USD (open)" in out
    assert "25.00  Pro plan" in out

    token = user_token["token"]
    listed = http.get(f"/platform/organizations/{slug}/billing/invoices", token=token).json()
    assert [(i["period"], i["total"], i["status"], i["provider"]) for i in listed] == [
        (last_month(), "25.00", "open", "local")]
    detail = http.get(f"/platform/organizations/{slug}/billing/invoices/{listed[0]['id']}", token=token).json()
    assert [(line["kind"], line["amount"]) for line in detail["lines"]] == [("base", "25.00")]
    # The local provider wrote it down (no network).
    local = settings.state_dir + f"/invoices/{slug}/{last_month()}.json"
    assert json.loads(open(local).read())["total"] == "25.00"

    # Closing again gives the very same invoice.
    assert platformctl(["billing", "close-period", "--org", slug, "--period", last_month()]) == 0
    assert http.get(f"/platform/organizations/{slug}/billing/invoices/{listed[0]['id']}", token=token).json() == detail
    # The current month has not ended: refused, said why.
    capsys.readouterr()
    assert platformctl(["billing", "close-period", "--org", slug,
                        "--period", rating.period_of(datetime.now(timezone.utc))]) == 1
    assert "has not ended yet" in capsys.readouterr().err


def test_stripe_webhooks_through_the_gateway_apply_once_and_refuse_bad_signatures(
        settings: Settings, rpc: Any, http: Any, user_token: dict[str, str]) -> None:
    slug, invoice = backdated_pro_org(settings, rpc, http, user_token)
    secret = settings.stripe_webhook_secret
    paid = stripe_event("invoice.paid", invoice["id"])
    payload, headers = signed(paid, secret)

    r = http.post(WEBHOOK, data=payload, headers=dict(headers))
    assert r.status_code == 200 and r.json() == {"received": True, "duplicate": False, "applied": True,
                                                "outcome": "applied"}, r.text
    # Stripe delivers again (it retries until it sees a 2xx): a no-op.
    r = http.post(WEBHOOK, data=payload, headers=dict(headers))
    assert r.status_code == 200 and r.json()["duplicate"] is True
    # An older failure delivered late does not undo the payment.
    stale = stripe_event("invoice.payment_failed", invoice["id"], created=paid["created"] - 60)
    late_payload, late_headers = signed(stale, secret)
    r = http.post(WEBHOOK, data=late_payload, headers=dict(late_headers))
    assert r.status_code == 200 and r.json()["outcome"] == "stale"
    path = f"/platform/organizations/{slug}/billing/invoices/{invoice['id']}"
    assert http.get(path, token=user_token["token"]).json()["status"] == "paid"

    # Bad signature, wrong secret, no signature: 400, and nothing recorded.
    forged = stripe_event("invoice.voided", invoice["id"])
    body, good = signed(forged, secret)
    bad = {**good, "Stripe-Signature": good["Stripe-Signature"][:-4] + "0000"}
    assert http.post(WEBHOOK, data=body, headers=bad).status_code == 400
    body2, other = signed(forged, "whsec_someone_else")
    assert http.post(WEBHOOK, data=body2, headers=other).status_code == 400
    r = http.post(WEBHOOK, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "Stripe-Signature" in r.json()["message"]
    assert http.get(path, token=user_token["token"]).json()["status"] == "paid"
    # The forged event was not recorded: its genuine delivery still applies.
    r = http.post(WEBHOOK, data=body, headers=good)
    assert r.status_code == 200 and r.json()["duplicate"] is False
