"""The Stripe payments adapter against localstripe (PyPI; a fake but stateful Stripe API
server) run as a subprocess on loopback, through the real stripe SDK: customers, invoice
items, invoices and payment, every create with an idempotency key. And localstripe's own
signed webhooks delivered to the running platform's gateway.

What localstripe does not do, and how the tests live with it: it ignores Idempotency-Key
(so the tests check that every create sends one, derived from our ids, rather than that
the server deduplicates), it has no /v1/invoices/{id}/finalize (the adapter uses `pay`,
which finalizes a draft on Stripe too), it drops the metadata given to an invoice create
(the adapter checks and sets it again: webhooks find our invoice by it), and it only
invoices customers that have a subscription (real Stripe invoices pending items without
one), so each test customer gets a $0 subscription first, set up here with the SDK, not by
the adapter.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Iterator, Mapping

import pytest
import requests
import stripe

from services.billing.adapters import StripePayments
from services.shared.runner import ROOT
from services.shared.settings import Settings
from tests.conftest import ARTIFACTS, free_port
from tests.support import stop_process

from .test_billing import backdated_pro_org, wait_for

API_KEY = "sk_test_localstripe"


class RecordingClient(stripe.RequestsClient):
    """The SDK's own HTTP client, remembering each request's method, path and headers."""

    def __init__(self) -> None:
        super().__init__(timeout=10)
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None) -> Any:
        self.sent.append((method.upper(), url.split("//", 1)[-1].split("/", 1)[-1], dict(headers or {})))
        return super().request(method, url, headers, post_data)


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    port = free_port()
    log_path = ARTIFACTS / "logs" / f"localstripe-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(port)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "localstripe did not start"
                time.sleep(0.1)
        yield base
    finally:
        stop_process(proc)


def sdk(base: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": base}, max_network_retries=0)


def give_subscription(client: stripe.StripeClient, customer: str) -> None:
    """localstripe only invoices customers with a subscription (see the module docstring)."""
    product = client.v1.products.create(params={"name": "Platform usage", "type": "service"})
    plan = client.v1.plans.create(params={"amount": 0, "currency": "usd", "interval": "month",
                                          "product": product.id})
    client.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": plan.id}]})


def give_card(client: stripe.StripeClient, customer: str) -> None:
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": pm.id}})


def our_invoice(total: str = "29.39") -> dict[str, Any]:
    invoice_id = str(uuid.uuid4())
    lines = [{"line": 1, "kind": "base", "metric": None, "description": "Pro plan", "amount": "25.00"},
             {"line": 2, "kind": "overage", "metric": "egress_bytes", "description": "Egress: 12.5 GB", "amount": "1.13"},
             {"line": 3, "kind": "overage", "metric": "function_invocations", "description": "Functions", "amount": "3.00"},
             {"line": 4, "kind": "correction", "metric": "egress_bytes", "description": "Correction", "amount": "0.26"}]
    return {"id": invoice_id, "org_slug": "acme-inc", "period": "2026-01", "currency": "usd", "total": total,
            "lines": lines}


def test_stripe_adapter_invoices_and_charges_with_idempotency_keys(localstripe: str) -> None:
    http = RecordingClient()
    payments = StripePayments(API_KEY, localstripe, http_client=http, max_network_retries=0)
    subscription_id = str(uuid.uuid4())
    customer = payments.ensure_customer("acme-inc", subscription_id)
    assert customer.startswith("cus_")
    give_subscription(sdk(localstripe), customer)
    give_card(sdk(localstripe), customer)

    invoice = our_invoice()
    outcome = payments.submit_invoice(customer, invoice)
    assert outcome["status"] == "paid" and outcome["external_id"].startswith("in_")

    # What Stripe now holds: our lines as items, in cents, on one invoice tagged with our id.
    got = sdk(localstripe).v1.invoices.retrieve(outcome["external_id"])
    assert got.customer == customer and got.metadata["platform_invoice_id"] == invoice["id"]
    assert got.total == 2939 and got.status == "paid"
    items = [(line.amount, line.description) for line in got.lines.data if line.amount]
    assert sorted(items) == sorted([(2500, "Pro plan"), (113, "Egress: 12.5 GB"), (300, "Functions"),
                                    (26, "Correction")])

    # Every create the adapter sent carried an idempotency key derived from our ids.
    posts = [(path, h.get("Idempotency-Key")) for method, path, h in http.sent if method == "POST"]
    # (localstripe drops metadata given on create, so the adapter set it again: an update.)
    creates = [p for p in posts if p[0] != f"v1/invoices/{outcome['external_id']}"]
    assert creates == [
        ("v1/customers", f"customer-{subscription_id}"),
        ("v1/invoiceitems", f"invoice-{invoice['id']}-line-1"),
        ("v1/invoiceitems", f"invoice-{invoice['id']}-line-2"),
        ("v1/invoiceitems", f"invoice-{invoice['id']}-line-3"),
        ("v1/invoiceitems", f"invoice-{invoice['id']}-line-4"),
        ("v1/invoices", f"invoice-{invoice['id']}"),
        (f"v1/invoices/{outcome['external_id']}/pay", f"invoice-{invoice['id']}-pay"),
    ]


def test_an_invoice_without_a_payment_method_stays_open(localstripe: str) -> None:
    payments = StripePayments(API_KEY, localstripe, max_network_retries=0)
    customer = payments.ensure_customer("no-card-inc", str(uuid.uuid4()))
    give_subscription(sdk(localstripe), customer)
    outcome = payments.submit_invoice(customer, our_invoice())
    assert outcome["status"] == "open"


def test_localstripe_signed_webhooks_mark_a_platform_invoice_paid_through_the_gateway(
        localstripe: str, settings: Settings, rpc: Any, http: Any, user_token: dict[str, str],
        gateway_url: str) -> None:
    # A platform organization with a closed, unpaid invoice for last month (see test_billing).
    org, invoice = backdated_pro_org(settings, rpc, http, user_token)
    token = user_token["token"]
    assert invoice["status"] == "open" and invoice["total"] == "25.00"

    # localstripe delivers its events, signed with the endpoint secret, to the gateway.
    requests.post(f"{localstripe}/_config/webhooks/platform", timeout=5, data={
        "url": f"{gateway_url}/platform/billing/stripe/webhook", "secret": settings.stripe_webhook_secret})
    # Play the Stripe provider's part for this invoice with the real adapter: charge it.
    client = sdk(localstripe)
    payments = StripePayments(API_KEY, localstripe, max_network_retries=0)
    customer = payments.ensure_customer(org, str(uuid.uuid4()))
    give_subscription(client, customer)
    give_card(client, customer)
    assert payments.submit_invoice(customer, invoice)["status"] == "paid"

    def status() -> str:
        r = http.get(f"/platform/organizations/{org}/billing/invoices/{invoice['id']}", token=token)
        assert r.status_code == 200, r.text
        return str(r.json()["status"])

    wait_for("localstripe's invoice.payment_succeeded to reach billing", lambda: status() == "paid", timeout=20)
