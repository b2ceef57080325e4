"""billing's adapters: the payment providers behind the payments port (local files, or
Stripe through its SDK) and the Stripe webhook signature check. The only billing module
that imports stripe.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import stripe

from services.shared.errors import InvalidInput

log = logging.getLogger("billing.payments")


class PaymentProviderError(Exception):
    """The provider refused or failed: the invoice stays unsubmitted and is retried."""


class LocalPayments:
    """The default provider: no network. Each finalized invoice is written as JSON under
    `<state_dir>/invoices/<org>/<period>.json` (rewritten identically on a retry); nothing
    is collected, so it stays open until someone settles it."""

    name = "local"

    def __init__(self, directory: Path):
        self.directory = directory

    def ensure_customer(self, org_slug: str, subscription_id: str) -> str:
        return f"local-{org_slug}"

    def submit_invoice(self, customer_id: str, invoice: dict[str, Any]) -> dict[str, Any]:
        folder = self.directory / invoice["org_slug"]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{invoice['period']}.json"
        data = json.dumps({**invoice, "customer": customer_id}, indent=2, sort_keys=True) + "\n"
        # Write then rename, so a reader never sees half an invoice.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".invoice-")
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, target)
        return {"external_id": f"local-{invoice['id']}", "status": "open"}


def to_cents(amount: str) -> int:
    cents = Decimal(amount) * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of cents")
    return int(cents)


class StripePayments:
    """Stripe as the payment provider: a customer per organization, an invoice item per
    invoice line, then a Stripe invoice gathering them, finalized and charged (`pay`).

    Every create carries an idempotency key derived from our own ids, so a retry after a
    crash (within Stripe's 24 h key lifetime) gets the same objects, never duplicates.
    `api_base` points the SDK at another server (a Stripe-compatible test server).
    """

    name = "stripe"

    def __init__(self, secret_key: str, api_base: str = "", *, http_client: Any = None, max_network_retries: int = 2):
        if not secret_key:
            raise ValueError("payments_provider=stripe needs PLATFORM_STRIPE_SECRET_KEY")
        kwargs: dict[str, Any] = {"max_network_retries": max_network_retries}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base.rstrip("/")}
        if http_client is not None:
            kwargs["http_client"] = http_client
        self.client = stripe.StripeClient(secret_key, **kwargs)

    def ensure_customer(self, org_slug: str, subscription_id: str) -> str:
        try:
            customer = self.client.v1.customers.create(
                params={"name": org_slug, "metadata": {"org_slug": org_slug}},
                options={"idempotency_key": f"customer-{subscription_id}"})
        except stripe.StripeError as e:
            raise PaymentProviderError(f"Stripe refused the customer for {org_slug}: {e.user_message or e}") from e
        return str(customer.id)

    def submit_invoice(self, customer_id: str, invoice: dict[str, Any]) -> dict[str, Any]:
        our_id = invoice["id"]
        metadata = {"platform_invoice_id": our_id, "org_slug": invoice["org_slug"], "period": invoice["period"]}
        try:
            for line in invoice["lines"]:
                self.client.v1.invoice_items.create(
                    params={"customer": customer_id, "amount": to_cents(line["amount"]),
                            "currency": invoice["currency"], "description": line["description"],
                            "metadata": {**metadata, "line": str(line["line"])}},
                    options={"idempotency_key": f"invoice-{our_id}-line-{line['line']}"})
            created = self.client.v1.invoices.create(
                params={"customer": customer_id, "description": f"{invoice['org_slug']} {invoice['period']}",
                        "metadata": metadata, "pending_invoice_items_behavior": "include"},
                options={"idempotency_key": f"invoice-{our_id}"})
            if (created.metadata.to_dict() if created.metadata else {}).get("platform_invoice_id") != our_id:
                # Webhooks find our invoice by this metadata. Stripe keeps what create was
                # given; a compatible server may drop it (localstripe does): set it again.
                created = self.client.v1.invoices.update(created.id, params={"metadata": metadata})
        except stripe.StripeError as e:
            raise PaymentProviderError(f"Stripe refused invoice {our_id}: {e.user_message or e}") from e
        if created.total != to_cents(invoice["total"]):
            # Another pending item of this customer was swept in: do not charge a wrong sum.
            raise PaymentProviderError(f"Stripe invoice {created.id} totals {created.total} cents; "
                                       f"ours is {to_cents(invoice['total'])}: left as a draft for an operator")
        status = "open"
        try:
            paid = self.client.v1.invoices.pay(created.id, options={"idempotency_key": f"invoice-{our_id}-pay"})
            status = "paid" if paid.status == "paid" else "open"
        except stripe.CardError as e:
            log.info("charging Stripe invoice %s failed: %s", created.id, e.user_message or e.code)
            status = "payment_failed"
        except stripe.InvalidRequestError as e:
            # Typically: no payment method yet. The invoice stays open; webhooks tell the rest.
            log.info("Stripe invoice %s not charged now: %s", created.id, e.user_message or e)
        except stripe.StripeError as e:
            log.warning("Stripe invoice %s created but not charged: %s", created.id, e.user_message or e)
        return {"external_id": str(created.id), "status": status}


class StripeWebhooks:
    """Checks a webhook delivery's Stripe-Signature with the endpoint's signing secret."""

    provider = "stripe"

    def __init__(self, secret: str):
        self.secret = secret

    def verify(self, payload: str, signature: str) -> dict[str, Any]:
        try:
            event = stripe.Webhook.construct_event(payload, signature, self.secret)
        except stripe.SignatureVerificationError:
            raise InvalidInput("Stripe-Signature: the signature does not verify (or is too old)") from None
        except ValueError:
            raise InvalidInput("payload: not a JSON Stripe event") from None
        return dict(event.to_dict())
