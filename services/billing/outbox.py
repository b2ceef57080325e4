"""billing outbox: plan changes and invoices as versioned contracts (pure functions)."""

from __future__ import annotations

from typing import Any

from services.shared.contracts import OutgoingMessage
from services.shared.outbox import RelaySpec

from .application import BillingApplication
from .domain import Invoice, Subscription


def to_message(e: Any) -> OutgoingMessage | None:
    meta = getattr(e, "meta", None) or {}
    common = {"correlation_id": meta.get("correlation_id"), "causation_id": meta.get("causation_id")}
    if isinstance(e, Subscription.PlanChanged):
        return OutgoingMessage("plan_changed", 1, {"org_slug": e.org_slug, "previous_plan": e.previous_plan,
                                                   "plan": e.plan, "spend_cap": e.spend_cap, "effective_at": e.at,
                                                   "proration_amount": e.proration},
                               org_id=e.org_slug, **common)
    if isinstance(e, Subscription.SpendCapChanged):
        return OutgoingMessage("spend_cap_changed", 1, {"org_slug": e.org_slug, "plan": e.plan,
                                                        "spend_cap": e.spend_cap, "effective_at": e.at},
                               org_id=e.org_slug, **common)
    if isinstance(e, Invoice.Finalized):
        status = "paid" if e.total in ("0.00", "-0.00") else "open"
        lines = [{k: line[k] for k in ("line", "kind", "metric", "description", "amount")} for line in e.lines]
        return OutgoingMessage("invoice_finalized", 1, {"invoice_id": str(e.originator_id), "org_slug": e.org_slug,
                                                        "period": e.period, "period_start": e.period_start,
                                                        "period_end": e.period_end, "currency": e.currency,
                                                        "total": e.total, "status": status, "lines": lines},
                               org_id=e.org_slug, **common)
    if isinstance(e, Invoice.PaymentUpdated):
        return OutgoingMessage("invoice_status_changed", 1, {"invoice_id": str(e.originator_id),
                                                             "org_slug": e.org_slug, "period": e.period,
                                                             "previous_status": e.previous_status,
                                                             "status": e.status, "source": e.source},
                               org_id=e.org_slug)
    return None


RELAY = RelaySpec(producer="billing", application=BillingApplication, to_message=to_message)
