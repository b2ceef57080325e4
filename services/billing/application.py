"""billing application: subscriptions (start, read, preview and change plans), entitlements
and usage restrictions for other services, period close into invoices, submission to the
payment provider, and the provider's webhook events. One method per command.

Imports the domain, eventsourcing, shared errors, and its own plans, rating and read model.
Ports are passed per call by the service (orgs, projects, usage: RPC to other services;
payments and webhooks: adapters built by bootstrap); `clock` and `index` are set by
bootstrap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import ContextManager, Any, Callable, Protocol

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from services.shared.errors import Conflict, InvalidInput, LimitExceeded, NotFound, PlatformError, rules_as

from . import rating
from .domain import IdempotencyRecord, Invoice, ProviderEvent, RuleViolation, Subscription
from .plans import METRICS, ORDER, Plans, entitlements, load_plans, rank, spend_cap_adjustable
from .subscriptions import MemorySubscriptions, Subscriptions

log = logging.getLogger("billing")

# Project statuses that no longer use resources (the projects service counts the rest as
# active against max_projects: a pause or delete frees the slot only once it completed).
INACTIVE_PROJECT_STATUSES = {"INACTIVE", "REMOVED"}


class OrgsPort(Protocol):
    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]: ...


class ProjectsPort(Protocol):
    def list_projects(self, user_id: str) -> list[dict[str, Any]]: ...


class UsagePort(Protocol):
    def period_totals(self, org_slug: str, start_iso: str, end_iso: str) -> dict[str, Any]: ...


class PaymentsPort(Protocol):
    """Where finalized invoices go to be collected."""

    name: str

    def ensure_customer(self, org_slug: str, subscription_id: str) -> str: ...

    def submit_invoice(self, customer_id: str, invoice: dict[str, Any]) -> dict[str, Any]:
        """Hand over a finalized invoice; returns {"external_id", "status"} where status is
        "open" (to be collected) or "paid"."""
        ...


class WebhookVerifier(Protocol):
    provider: str

    def verify(self, payload: str, signature: str) -> dict[str, Any]:
        """The provider's event as a dict, or InvalidInput if the signature does not hold."""
        ...


def meta_of(ctx: dict[str, Any] | None) -> dict[str, Any]:
    ctx = ctx or {}
    return {k: ctx.get(k) for k in ("actor", "correlation_id", "causation_id")}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class BillingApplication(Application):
    name = "billing"

    plans: Plans
    index: Subscriptions
    clock: Callable[[], datetime] = staticmethod(utcnow)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plans = load_plans()
        self.index = MemorySubscriptions()

    def close(self) -> None:
        super().close()
        self.index.close()

    # ===== from orgs ===========================================================================
    def start_subscription(self, envelope: dict[str, Any]) -> bool:
        """Every new organization starts on the free plan. Idempotent: the aggregate's id is
        uuid5(slug) and the index claims the message's event_id."""
        slug = envelope["payload"]["slug"]
        if self.index.already_applied(str(envelope["event_id"])):
            return False  # a redelivery: not even the aggregate may be touched again
        try:
            sub = self._subscription(slug)
        except NotFound:
            at = envelope["occurred_at"]
            started = rating.iso(at) if isinstance(at, datetime) else rating.iso(rating.parse_time(str(at)))
            sub = Subscription(org_slug=slug, plan="free", spend_cap=bool(self.plans["free"]["spend_cap"]),
                               started_at=started, source_event_id=str(envelope["event_id"]),
                               meta={"correlation_id": envelope.get("correlation_id"),
                                     "causation_id": str(envelope["event_id"]), "actor": None})
            try:
                self.save(sub)
            except IntegrityError:
                sub = self._subscription(slug)  # a concurrent delivery created it first
        return self.index.record_start(envelope, sub.plan, sub.version)

    # ===== for other services ===================================================================
    def get_subscription(self, org_slug: str) -> dict[str, Any]:
        return self._subscription_view(self._subscription(org_slug))

    def get_entitlements(self, org_slug: str) -> dict[str, Any]:
        """What the org's plan allows. Every organization starts on free, so an org whose
        organization_created billing has not processed yet is on free too."""
        try:
            sub = self._subscription(org_slug)
        except NotFound:
            return entitlements(self.plans, "free")
        return entitlements(self.plans, sub.plan, sub.spend_cap)

    def check_usage(self, org_slug: str, usage: UsagePort, metric: str | None = None) -> dict[str, Any]:
        """Which metrics this period are past a quota that restricts (a hard limit, or a
        soft one under the spend cap). With `metric`, refuse (LimitExceeded) if that one is."""
        if metric is not None and metric not in METRICS:
            raise InvalidInput(f"metric: one of {', '.join(METRICS)}")
        ent = self.get_entitlements(org_slug)
        start, end = rating.period_bounds(rating.period_of(self.clock()))
        used = self._usage(usage, org_slug, start, end)
        restricted = [q for q in rating.quota_usage(self.plans[ent["plan"]], ent["spend_cap"], used)
                      if q["over"] and q["past_quota"] == "restricted"]
        for q in restricted:
            q["reason"] = (f"{rating.metric_label(q['metric'])} this period is past the {ent['plan']} plan's quota "
                           f"({q['used']} of {q['included']}); "
                           + ("upgrade the plan" if q["overage_price"] is None else "switch off the spend cap or upgrade"))
        if metric is not None:
            for q in restricted:
                if q["metric"] == metric:
                    raise LimitExceeded(q["reason"])
        return {"org_slug": org_slug, "plan": ent["plan"], "period": rating.period_of(start),
                "restricted": restricted}

    # ===== plans and subscriptions (users) ========================================================
    def list_plans(self) -> list[dict[str, Any]]:
        names = sorted(self.plans, key=rank)
        return [{**entitlements(self.plans, n), "spend_cap_adjustable": spend_cap_adjustable(self.plans[n])}
                for n in names]

    def subscription_for(self, user_id: str, slug: str, orgs: OrgsPort) -> dict[str, Any]:
        orgs.authorize(user_id, slug, "billing.read")
        return self._subscription_view(self._subscription_or_free(slug))

    def preview_change(self, user_id: str, slug: str, body: dict[str, Any], orgs: OrgsPort, projects: ProjectsPort,
                       usage: UsagePort | None) -> dict[str, Any]:
        """The dry run: what would change, which limits the new plan would break, and what
        the change adds to this period's base fee. Changes nothing."""
        orgs.authorize(user_id, slug, "billing.read")
        sub = self._subscription_or_free(slug)
        plan, cap = self._check_target(sub, body)
        return self._preview(user_id, sub, plan, cap, projects, usage)

    def change_plan(self, user_id: str, slug: str, body: dict[str, Any], orgs: OrgsPort, projects: ProjectsPort,
                    idempotency_key: str | None = None, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        orgs.authorize(user_id, slug, "billing.manage")
        request_hash = hashlib.sha256(json.dumps([slug, body.get("plan"), body.get("spend_cap")]).encode()).hexdigest()
        if idempotency_key is not None:
            if not (1 <= len(idempotency_key) <= 255):
                raise InvalidInput("Idempotency-Key: 1 to 255 characters")
            earlier = self._idempotent_result(user_id, idempotency_key, request_hash)
            if earlier is not None:
                return earlier
        # orgs just said the organization exists; if its organization_created has not reached
        # billing yet, the change starts its subscription (the handler then finds it).
        sub = self._subscription_or_free(slug)
        plan, cap = self._check_target(sub, body)
        # Usage is not read here: being past a quota does not block a change (the dry run
        # tells what would be restricted or billed); too many active projects does.
        preview = self._preview(user_id, sub, plan, cap, projects, None)
        refused = [b for b in preview["broken_limits"] if b["effect"] == "refused"]
        if refused:
            raise LimitExceeded("; ".join(b["message"] for b in refused))
        if plan != sub.plan or cap != sub.spend_cap:
            with _rules():
                sub.change_plan(plan=plan, spend_cap=cap, at=preview["effective_at"],
                                proration=preview["proration"]["amount"], meta=meta_of(ctx))
        result = {"subscription": self._subscription_view(sub), "proration": preview["proration"],
                  "changes": preview["changes"]}
        pending: list[Any] = [sub]
        if idempotency_key is not None:
            pending.append(IdempotencyRecord(scope=user_id, key=idempotency_key, request_hash=request_hash,
                                             result=result))
        try:
            self.save(*pending)
        except IntegrityError:
            if idempotency_key is not None:
                earlier = self._idempotent_result(user_id, idempotency_key, request_hash)
                if earlier is not None:
                    return earlier
            raise Conflict("the subscription changed meanwhile; look at it again and retry") from None
        self.index.record_plan(slug, sub.plan, sub.version)
        return result

    # ===== invoices =============================================================================
    def close_period(self, org_slug: str, period: str, usage: UsagePort, payments: PaymentsPort | None = None,
                     ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close one organization's billing period into its invoice, then hand it to the
        payment provider. Closing again returns the same invoice: it never changes."""
        try:
            start, end = rating.period_bounds(period)
        except ValueError as e:
            raise InvalidInput(f"period: {e}") from None
        if end > self.clock():
            raise Conflict(f"period {period} has not ended yet (it ends {rating.iso(end)})")
        sub = self._subscription(org_slug)
        if period not in sub.invoices:
            invoice = self._make_invoice(sub, period, start, end, usage, ctx)
            if invoice is not None:
                try:
                    self.save(sub, invoice)
                except IntegrityError:
                    sub = self._subscription(org_slug)  # closed concurrently: theirs stands
        if period not in sub.invoices:
            raise InvalidInput(f"period: {org_slug}'s subscription started after {period} ended; nothing to invoice")
        if payments is not None:
            return self.submit_invoice(org_slug, period, payments)
        return self._invoice_view(self._invoice(sub.invoices[period]))

    def _make_invoice(self, sub: Subscription, period: str, start: datetime, end: datetime, usage: UsagePort,
                      ctx: dict[str, Any] | None) -> Invoice | None:
        if rating.parse_time(sub.started_at) >= end:
            return None
        used = self._usage(usage, sub.org_slug, start, end)
        # Usage is rated on the plan (and cap) in force when the period ended.
        last = [s for s in sub.segments if rating.parse_time(s["from"]) < end][-1]
        rated_plan, rated_cap = last["plan"], bool(last["spend_cap"])
        rates = rating.rates_of(self.plans[rated_plan])
        lines = rating.base_lines(self.plans, sub.segments, start, end)
        lines += rating.overage_lines(rates, rated_cap, used)
        previous = sub.invoices.get(rating.previous_period(period))
        if previous is not None:
            before = self._invoice(previous)
            p_start, p_end = rating.period_bounds(before.period)
            lines += rating.correction_lines(self._invoice_view(before), self._usage(usage, sub.org_slug, p_start, p_end))
        lines = rating.number_lines(lines)
        invoice = Invoice(org_slug=sub.org_slug, period=period, period_start=rating.iso(start),
                          period_end=rating.iso(end), currency=self.plans[rated_plan]["currency"], lines=lines,
                          total=rating.total(lines), rated_plan=rated_plan, rated_spend_cap=rated_cap, rates=rates,
                          usage=used, finalized_at=rating.iso(self.clock()), meta=meta_of(ctx))
        sub.record_invoice(period, str(invoice.id))
        return invoice

    def submit_invoice(self, org_slug: str, period: str, payments: PaymentsPort) -> dict[str, Any]:
        """Hand a finalized invoice to the payment provider, once (idempotent: a submitted
        or settled invoice is left alone; the provider's own idempotency keys cover a
        crash between its calls and our save)."""
        sub = self._subscription(org_slug)
        if period not in sub.invoices:
            raise NotFound(f"no invoice for {org_slug} {period}")
        invoice = self._invoice(sub.invoices[period])
        if not invoice.needs_submission:
            return self._invoice_view(invoice)
        customer = sub.customers.get(payments.name)
        if customer is None:
            customer = payments.ensure_customer(org_slug, str(sub.id))
            sub.link_customer(provider=payments.name, customer_id=customer)
        outcome = payments.submit_invoice(customer, self._invoice_view(invoice))
        invoice.record_submission(provider=payments.name, external_id=str(outcome["external_id"]))
        if outcome.get("status") in ("paid", "payment_failed"):
            invoice.update_payment(outcome["status"], rating.iso(self.clock()), payments.name,
                                   str(outcome["external_id"]))
        self.save(sub, invoice)
        return self._invoice_view(invoice)

    def close_due_periods(self, usage: UsagePort, payments: PaymentsPort) -> dict[str, int]:
        """For every organization: close the last ended month if it is not closed yet, and
        hand over any invoice not submitted yet. One organization's failure does not stop
        the others; it is logged and tried again next time."""
        period = rating.previous_period(rating.period_of(self.clock()))
        _, end = rating.period_bounds(period)
        done = {"closed": 0, "submitted": 0, "failed": 0}
        for slug in self.index.org_slugs():
            try:
                sub = self._subscription(slug)
                if period not in sub.invoices and rating.parse_time(sub.started_at) < end:
                    self.close_period(slug, period, usage)
                    done["closed"] += 1
                    sub = self._subscription(slug)
                for p, invoice_id in sorted(sub.invoices.items()):
                    if self._invoice(invoice_id).needs_submission:
                        self.submit_invoice(slug, p, payments)
                        done["submitted"] += 1
            except Exception:  # noqa: BLE001 -- one org must not stop the run; logged, retried next time
                log.exception("closing %s for %s failed", period, slug)
                done["failed"] += 1
        return done

    def list_invoices(self, user_id: str, slug: str, orgs: OrgsPort) -> list[dict[str, Any]]:
        orgs.authorize(user_id, slug, "billing.invoices")
        sub = self._subscription_or_free(slug)
        out = []
        for period in sorted(sub.invoices, reverse=True):
            view = self._invoice_view(self._invoice(sub.invoices[period]))
            out.append({k: v for k, v in view.items() if k not in ("lines", "usage")})
        return out

    def get_invoice(self, user_id: str, slug: str, invoice_id: str, orgs: OrgsPort) -> dict[str, Any]:
        orgs.authorize(user_id, slug, "billing.invoices")
        sub = self._subscription_or_free(slug)
        # Only this organization's invoices: an id from the client is looked up in its list.
        if invoice_id not in sub.invoices.values():
            raise NotFound("invoice not found")
        return self._invoice_view(self._invoice(invoice_id))

    # ===== payment provider events ================================================================
    def receive_provider_event(self, payload: str, signature: str, verifier: WebhookVerifier | None) -> dict[str, Any]:
        """A webhook delivery: verified, recorded once per provider event id (a second
        delivery is a no-op), applied to its invoice unless older news than it has."""
        if verifier is None:
            raise InvalidInput("payment webhooks are not configured (no webhook secret)")
        event = verifier.verify(payload, signature)
        event_id, event_type = str(event.get("id") or ""), str(event.get("type") or "")
        if not event_id:
            raise InvalidInput("event: no id")
        record_id = ProviderEvent.create_id(provider=verifier.provider, event_id=event_id)
        if self._exists(record_id):
            return {"received": True, "duplicate": True, "applied": False}
        status = PROVIDER_STATUS.get(event_type)
        obj = (event.get("data") or {}).get("object") or {}
        invoice_id = str((obj.get("metadata") or {}).get("platform_invoice_id") or "")
        pending: list[Any] = []
        outcome = "ignored"
        if status is not None and _is_uuid(invoice_id):
            try:
                found: Any = self.repository.get(uuid.UUID(invoice_id))
            except AggregateNotFoundError:
                found = None
            if isinstance(found, Invoice):
                invoice = found
                at = rating.iso(datetime.fromtimestamp(int(event.get("created") or 0), timezone.utc))
                applied = invoice.update_payment(status, at, verifier.provider, event_id)
                outcome = "applied" if applied else "stale"
                if applied:
                    pending.append(invoice)
        pending.append(ProviderEvent(provider=verifier.provider, event_id=event_id, event_type=event_type,
                                     outcome=outcome))
        try:
            self.save(*pending)
        except IntegrityError:
            # The same event delivered twice at once: the other delivery recorded it.
            return {"received": True, "duplicate": True, "applied": False}
        return {"received": True, "duplicate": False, "applied": outcome == "applied", "outcome": outcome}

    # ===== operators ==============================================================================
    def reset_index(self) -> None:
        self.index.reset()

    # ===== internals ==============================================================================
    def _subscription(self, slug: str) -> Subscription:
        try:
            sub: Subscription = self.repository.get(Subscription.create_id(org_slug=slug))
        except AggregateNotFoundError:
            raise NotFound(f"no subscription for organization {slug}") from None
        return sub

    def _subscription_or_free(self, slug: str) -> Subscription:
        """The org's subscription, or (before billing has seen organization_created) an
        unsaved free one, so a brand-new organization reads as what it is: on free."""
        try:
            return self._subscription(slug)
        except NotFound:
            return Subscription(org_slug=slug, plan="free", spend_cap=bool(self.plans["free"]["spend_cap"]),
                                started_at=rating.iso(self.clock()), source_event_id="", meta={})

    def _invoice(self, invoice_id: str) -> Invoice:
        try:
            invoice: Invoice = self.repository.get(uuid.UUID(invoice_id))
        except (AggregateNotFoundError, ValueError):
            raise NotFound("invoice not found") from None
        return invoice

    def _exists(self, aggregate_id: uuid.UUID) -> bool:
        try:
            self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return False
        return True

    def _usage(self, usage: UsagePort, slug: str, start: datetime, end: datetime) -> dict[str, int]:
        raw = usage.period_totals(slug, rating.iso(start), rating.iso(end)) or {}
        out = {}
        for metric, quantity in raw.items():
            try:
                out[str(metric)] = int(Decimal(str(quantity)))
            except (InvalidOperation, ValueError):
                raise InvalidInput(f"usage: {metric} is not a number ({quantity!r})") from None
        return out

    def _check_target(self, sub: Subscription, body: dict[str, Any]) -> tuple[str, bool]:
        plan = body.get("plan")
        if not isinstance(plan, str) or plan not in self.plans:
            raise InvalidInput(f"plan: one of {', '.join(n for n in ORDER if n in self.plans)}")
        cfg = self.plans[plan]
        cap = body.get("spend_cap")
        if cap is None:
            # Staying on the plan keeps the cap as set; a new plan starts with its default.
            cap = sub.spend_cap if plan == sub.plan else bool(cfg["spend_cap"])
        elif not isinstance(cap, bool):
            raise InvalidInput("spend_cap: true or false")
        elif cap != cfg["spend_cap"] and not spend_cap_adjustable(cfg):
            raise InvalidInput(f"spend_cap: the {plan} plan's spend cap is always "
                               f"{'on' if cfg['spend_cap'] else 'off'}")
        return plan, cap

    def _preview(self, user_id: str, sub: Subscription, plan: str, cap: bool, projects: ProjectsPort,
                 usage: UsagePort | None) -> dict[str, Any]:
        now = self.clock()
        period = rating.period_of(now)
        start, end = rating.period_bounds(period)
        active = sum(1 for p in projects.list_projects(user_id)
                     if p.get("organization_slug") == sub.org_slug and p.get("status") not in INACTIVE_PROJECT_STATUSES)
        used: dict[str, int] | None = None
        usage_note = None
        if usage is not None:
            try:
                # Usage so far: metering aggregates by the hour, so up to the end of this one.
                used = self._usage(usage, sub.org_slug, start, rating.end_of_hour(now))
            except Exception as e:  # noqa: BLE001 -- the dry run still answers for projects
                usage_note = f"usage could not be read ({type(e).__name__}); quota limits were not checked"
        broken = rating.broken_limits(self.plans, plan, cap, active, used)
        amount = rating.proration(self.plans, sub.plan, plan, now, start, end)
        kind = ("none" if plan == sub.plan and cap == sub.spend_cap else "spend_cap" if plan == sub.plan
                else "upgrade" if rank(plan) > rank(sub.plan) else "downgrade")
        return {
            "org_slug": sub.org_slug, "current_plan": sub.plan, "current_spend_cap": sub.spend_cap,
            "plan": plan, "spend_cap": cap, "change": kind, "effective_at": rating.iso(now),
            "period": {"period": period, "start": rating.iso(start), "end": rating.iso(end)},
            "proration": {"amount": str(amount), "currency": self.plans[plan]["currency"],
                          "description": (f"{'charge' if amount > 0 else 'credit' if amount < 0 else 'no change'} "
                                          f"for the rest of {period} on the {plan} plan's base fee")},
            "changes": rating.entitlement_changes(self.plans, sub.plan, sub.spend_cap, plan, cap),
            "active_projects": active, "usage": used, "usage_checked": used is not None, "note": usage_note,
            "broken_limits": broken, "allowed": not any(b["effect"] == "refused" for b in broken),
        }

    def _idempotent_result(self, user_id: str, key: str, request_hash: str) -> dict[str, Any] | None:
        try:
            rec: IdempotencyRecord = self.repository.get(IdempotencyRecord.create_id(scope=user_id, key=key))
        except AggregateNotFoundError:
            return None
        if rec.request_hash != request_hash:
            raise Conflict("Idempotency-Key was already used with a different request body")
        return dict(rec.result)

    def _subscription_view(self, sub: Subscription) -> dict[str, Any]:
        period = rating.period_of(self.clock())
        start, end = rating.period_bounds(period)
        return {
            "org_slug": sub.org_slug, "plan": sub.plan, "spend_cap": sub.spend_cap,
            "spend_cap_adjustable": spend_cap_adjustable(self.plans[sub.plan]), "started_at": sub.started_at,
            "current_period": {"period": period, "start": rating.iso(start), "end": rating.iso(end)},
            "entitlements": entitlements(self.plans, sub.plan, sub.spend_cap),
            "history": [dict(s) for s in sub.segments],
        }

    @staticmethod
    def _invoice_view(invoice: Invoice) -> dict[str, Any]:
        return {
            "id": str(invoice.id), "org_slug": invoice.org_slug, "period": invoice.period,
            "period_start": invoice.period_start, "period_end": invoice.period_end, "currency": invoice.currency,
            "total": invoice.total, "status": invoice.status, "finalized_at": invoice.finalized_at,
            "rated_plan": invoice.rated_plan, "rated_spend_cap": invoice.rated_spend_cap, "rates": invoice.rates,
            "provider": invoice.provider, "external_id": invoice.external_id,
            "lines": [dict(line) for line in invoice.lines], "usage": dict(invoice.usage),
        }


# Stripe event types that move an invoice's payment status.
PROVIDER_STATUS = {
    "invoice.paid": "paid",
    "invoice.payment_succeeded": "paid",
    "invoice.payment_failed": "payment_failed",
    "invoice.voided": "void",
    "invoice.marked_uncollectible": "uncollectible",
}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _rules(error: type[PlatformError] = Conflict) -> ContextManager[None]:
    """Domain rule violations become user-facing errors (Conflict unless told otherwise)."""
    return rules_as(RuleViolation, error)
