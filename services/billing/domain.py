"""billing domain: Subscription (an organization's plan over time, its invoices and payment
customers), Invoice (a closed period's bill: lines never change once finalized; only its
payment status moves), ProviderEvent (a payment provider's webhook event, seen once) and
IdempotencyRecord (retry-safe plan changes).

Imports eventsourcing.domain and the standard library only. Money is carried as strings
of exact decimals ("25.00") so no float ever touches it. Ids are uuid5 of natural keys:
the store itself refuses a second subscription per org, a second invoice per org and
period, and a second record of one provider event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("2f8c1d4e-9a6b-4c3d-8e7f-1a2b3c4d5e6f")
Meta = dict[str, Any]

# Payment status of an invoice, by rank: a webhook delivered late never moves an invoice
# back to a lower rank (paid stays paid when an older payment_failed arrives after it).
STATUS_RANK = {"open": 0, "payment_failed": 1, "uncollectible": 2, "paid": 3, "void": 3}
FINAL = {"paid", "void"}


class RuleViolation(Exception):
    """A command would break an invariant; the message says which, for the user."""


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


class Subscription(Aggregate):
    @staticmethod
    def create_id(org_slug: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "subscription:" + org_slug)

    @event("Started")
    def __init__(self, org_slug: str, plan: str, spend_cap: bool, started_at: str, source_event_id: str,
                 meta: Meta) -> None:
        self.org_slug = org_slug
        self.plan = plan
        self.spend_cap = spend_cap
        self.started_at = started_at
        self.source_event_id = source_event_id
        # Every stretch of time with one plan and cap, oldest first: proration reads it.
        self.segments: list[dict[str, Any]] = [{"plan": plan, "spend_cap": spend_cap, "from": started_at}]
        self.invoices: dict[str, str] = {}  # period (YYYY-MM) -> invoice id
        self.customers: dict[str, str] = {}  # payment provider -> its customer id

    def change_plan(self, plan: str, spend_cap: bool, at: str, proration: str, meta: Meta) -> None:
        if plan == self.plan and spend_cap == self.spend_cap:
            raise RuleViolation(f"the organization is already on the {plan} plan")
        if _time(at) < _time(self.segments[-1]["from"]):
            raise RuleViolation("a plan change cannot take effect before the previous one")
        if plan == self.plan:
            self._spend_cap_changed(org_slug=self.org_slug, plan=plan, spend_cap=spend_cap, at=at, meta=meta)
        else:
            self._plan_changed(org_slug=self.org_slug, previous_plan=self.plan, plan=plan, spend_cap=spend_cap,
                               at=at, proration=proration, meta=meta)

    @event("PlanChanged")
    def _plan_changed(self, org_slug: str, previous_plan: str, plan: str, spend_cap: bool, at: str, proration: str,
                      meta: Meta) -> None:
        self.plan, self.spend_cap = plan, spend_cap
        self.segments.append({"plan": plan, "spend_cap": spend_cap, "from": at})

    @event("SpendCapChanged")
    def _spend_cap_changed(self, org_slug: str, plan: str, spend_cap: bool, at: str, meta: Meta) -> None:
        self.spend_cap = spend_cap
        self.segments.append({"plan": plan, "spend_cap": spend_cap, "from": at})

    def record_invoice(self, period: str, invoice_id: str) -> None:
        if period in self.invoices:
            raise RuleViolation(f"period {period} is already invoiced")
        self._invoice_recorded(period=period, invoice_id=invoice_id)

    @event("InvoiceRecorded")
    def _invoice_recorded(self, period: str, invoice_id: str) -> None:
        self.invoices[period] = invoice_id

    @event("CustomerLinked")
    def link_customer(self, provider: str, customer_id: str) -> None:
        self.customers[provider] = customer_id


class Invoice(Aggregate):
    @staticmethod
    def create_id(org_slug: str, period: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"invoice:{org_slug}:{period}")

    @event("Finalized")
    def __init__(self, org_slug: str, period: str, period_start: str, period_end: str, currency: str,
                 lines: list[dict[str, Any]], total: str, rated_plan: str, rated_spend_cap: bool,
                 rates: dict[str, dict[str, Any]], usage: dict[str, int], finalized_at: str, meta: Meta) -> None:
        self.org_slug = org_slug
        self.period = period
        self.period_start = period_start
        self.period_end = period_end
        self.currency = currency
        self.lines = lines
        self.total = total
        self.rated_plan = rated_plan
        self.rated_spend_cap = rated_spend_cap
        # The quota terms usage was rated with, kept so a later correction re-rates this
        # period on the same terms even if config/plans.yaml changed since.
        self.rates = rates
        self.finalized_at = finalized_at
        self.usage = usage
        # Nothing is due on a zero invoice: it is settled the moment it is closed.
        self.status = "paid" if total in ("0.00", "-0.00") else "open"
        self.status_at = finalized_at
        self.provider: str | None = None
        self.external_id: str | None = None

    @property
    def needs_submission(self) -> bool:
        return self.provider is None and self.status == "open"

    @event("Submitted")
    def record_submission(self, provider: str, external_id: str) -> None:
        self.provider = provider
        self.external_id = external_id

    def update_payment(self, status: str, at: str, source: str, source_event_id: str) -> bool:
        """Apply a payment outcome reported at time `at`. False (and nothing recorded) when
        it would move the invoice back: a lower rank, or the same rank but older news."""
        if status not in STATUS_RANK:
            raise RuleViolation(f"unknown payment status {status}")
        have, new = STATUS_RANK[self.status], STATUS_RANK[status]
        if status == self.status or new < have or self.status in FINAL:
            return False
        if new == have and _time(at) <= _time(self.status_at):
            return False
        self._payment_updated(org_slug=self.org_slug, period=self.period, previous_status=self.status,
                              status=status, at=at, source=source, source_event_id=source_event_id)
        return True

    @event("PaymentUpdated")
    def _payment_updated(self, org_slug: str, period: str, previous_status: str, status: str, at: str, source: str,
                         source_event_id: str) -> None:
        self.status = status
        self.status_at = at


class ProviderEvent(Aggregate):
    """One webhook event of a payment provider, recorded once: a second delivery finds it."""

    @staticmethod
    def create_id(provider: str, event_id: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"provider-event:{provider}:{event_id}")

    @event("Received")
    def __init__(self, provider: str, event_id: str, event_type: str, outcome: str) -> None:
        self.provider = provider
        self.event_id = event_id
        self.event_type = event_type
        self.outcome = outcome


class IdempotencyRecord(Aggregate):
    """Remembers the first result of a plan change sent with an Idempotency-Key."""

    @staticmethod
    def create_id(scope: str, key: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"idempotency:{scope}:{key}")

    @event("Recorded")
    def __init__(self, scope: str, key: str, request_hash: str, result: dict[str, Any]) -> None:
        self.request_hash = request_hash
        self.result = result
