"""Billing routes of the gateway: plans, an organization's subscription (read, dry-run
preview, change), its invoices, and the Stripe webhook. Plain handler functions over the
billing service's RPC; the billing service authorises (through orgs) and decides.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate
from werkzeug.wrappers import Request, Response

from .app import MAX_BODY, json_response
from .errors import HttpError
from .routing import route

PLANS = ["free", "pro", "team", "enterprise"]
Ctx = dict[str, Any]


# ---- schemas ----------------------------------------------------------------------------------

class BillingQuota(Schema):
    included = fields.Integer(required=True, allow_none=True, metadata={"description": "Included per period (null: unlimited)"})
    unit = fields.Integer(required=True, metadata={"description": "Quantity per priced unit (1 GB = 1000000000 bytes)"})
    overage_price = fields.Raw(required=True, allow_none=True, metadata={"description": "USD per unit past included (null: not sold)"})
    limit = fields.String(required=True, validate=validate.OneOf(["hard", "soft"]))


class BillingEntitlements(Schema):
    plan = fields.String(required=True)
    max_projects = fields.Integer(required=True, allow_none=True, metadata={"description": "Active projects (null: no limit)"})
    price_monthly = fields.Raw(required=True, metadata={"description": "Base fee per month, USD"})
    currency = fields.String(required=True)
    spend_cap = fields.Boolean(required=True, metadata={"description": "Usage past quota restricted (true) or billed"})
    quotas = fields.Dict(keys=fields.String(), values=fields.Nested(BillingQuota), required=True)
    realtime = fields.Dict(keys=fields.String(), values=fields.Integer(allow_none=True), metadata={
        "description": "Ceilings of each project's realtime settings (realtime.max_*; null: the API's maximum)"})


class BillingPlan(BillingEntitlements):
    spend_cap_adjustable = fields.Boolean(required=True, metadata={"description": "Whether owners may switch the cap"})


class BillingPeriod(Schema):
    period = fields.String(required=True, metadata={"description": "YYYY-MM (calendar month, UTC)"})
    start = fields.String(required=True)
    end = fields.String(required=True)


class BillingSegment(Schema):
    plan = fields.String(required=True)
    spend_cap = fields.Boolean(required=True)
    from_ = fields.String(required=True, data_key="from", metadata={"description": "In force from (ISO 8601)"})


class BillingSubscription(Schema):
    org_slug = fields.String(required=True)
    plan = fields.String(required=True)
    spend_cap = fields.Boolean(required=True)
    spend_cap_adjustable = fields.Boolean(required=True)
    started_at = fields.String(required=True)
    current_period = fields.Nested(BillingPeriod, required=True)
    entitlements = fields.Nested(BillingEntitlements, required=True)
    history = fields.List(fields.Nested(BillingSegment), required=True)


class PlanChangeBody(Schema):
    class Meta:
        unknown = RAISE

    plan = fields.String(required=True, validate=validate.OneOf(PLANS))
    spend_cap = fields.Boolean(metadata={"description": "Omit to keep it (same plan) or take the new plan's default"})


class BillingProration(Schema):
    amount = fields.String(required=True, metadata={"description": "Exact decimal; negative is a credit"})
    currency = fields.String(required=True)
    description = fields.String(required=True)


class EntitlementChange(Schema):
    entitlement = fields.String(required=True)
    from_ = fields.Raw(required=True, allow_none=True, data_key="from")
    to = fields.Raw(required=True, allow_none=True)


class BrokenLimit(Schema):
    limit = fields.String(required=True, metadata={"description": "max_projects or quotas.<metric>"})
    metric = fields.String(required=True, allow_none=True)
    current = fields.Integer(required=True)
    allowed = fields.Integer(required=True)
    effect = fields.String(required=True, validate=validate.OneOf(["refused", "restricted", "billed"]),
                           metadata={"description": "refused: the change is refused until fixed"})
    message = fields.String(required=True)


class PlanChangePreview(Schema):
    org_slug = fields.String(required=True)
    current_plan = fields.String(required=True)
    current_spend_cap = fields.Boolean(required=True)
    plan = fields.String(required=True)
    spend_cap = fields.Boolean(required=True)
    change = fields.String(required=True, validate=validate.OneOf(["upgrade", "downgrade", "spend_cap", "none"]))
    effective_at = fields.String(required=True)
    period = fields.Nested(BillingPeriod, required=True)
    proration = fields.Nested(BillingProration, required=True)
    changes = fields.List(fields.Nested(EntitlementChange), required=True)
    active_projects = fields.Integer(required=True)
    usage = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True, allow_none=True)
    usage_checked = fields.Boolean(required=True)
    note = fields.String(required=True, allow_none=True)
    broken_limits = fields.List(fields.Nested(BrokenLimit), required=True)
    allowed = fields.Boolean(required=True, metadata={"description": "false: PUT would be refused (402)"})


class PlanChangeResult(Schema):
    subscription = fields.Nested(BillingSubscription, required=True)
    proration = fields.Nested(BillingProration, required=True)
    changes = fields.List(fields.Nested(EntitlementChange), required=True)


class InvoiceLine(Schema):
    line = fields.Integer(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(["base", "overage", "correction"]))
    metric = fields.String(required=True, allow_none=True)
    plan = fields.String(required=True, allow_none=True)
    description = fields.String(required=True)
    quantity = fields.Integer(required=True, allow_none=True)
    unit = fields.Integer(required=True, allow_none=True)
    unit_price = fields.String(required=True)
    amount = fields.String(required=True, metadata={"description": "Exact decimal, cents"})
    corrects = fields.String(metadata={"description": "The closed period a correction line settles"})
    from_ = fields.String(required=True, allow_none=True, data_key="from")
    until = fields.String(required=True, allow_none=True)


class InvoiceSummary(Schema):
    id = fields.String(required=True)
    org_slug = fields.String(required=True)
    period = fields.String(required=True)
    period_start = fields.String(required=True)
    period_end = fields.String(required=True)
    currency = fields.String(required=True)
    total = fields.String(required=True, metadata={"description": "Exact decimal, cents"})
    status = fields.String(required=True, validate=validate.OneOf(["open", "payment_failed", "uncollectible", "paid",
                                                                   "void"]))
    finalized_at = fields.String(required=True)
    rated_plan = fields.String(required=True)
    rated_spend_cap = fields.Boolean(required=True)
    provider = fields.String(required=True, allow_none=True)
    external_id = fields.String(required=True, allow_none=True)


class InvoiceDetail(InvoiceSummary):
    lines = fields.List(fields.Nested(InvoiceLine), required=True)
    usage = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class WebhookAck(Schema):
    received = fields.Boolean(required=True)
    duplicate = fields.Boolean(required=True)
    applied = fields.Boolean(required=True)
    outcome = fields.String()


# ---- routes -----------------------------------------------------------------------------------

@route("GET", "/platform/billing/plans", summary="Plans compared: prices, project limit, quotas, overage prices",
       tag="billing", response=BillingPlan, many=True, auth=False)
def billing_plans(gw: Any, request: Request, ctx: Ctx) -> Response:
    return json_response(BillingPlan(many=True).dump(gw.services.billing.list_plans()))


@route("GET", "/platform/organizations/<slug>/billing/subscription",
       summary="The organization's plan, spend cap, entitlements and current period", tag="billing",
       response=BillingSubscription)
def billing_subscription(gw: Any, request: Request, ctx: Ctx, slug: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(BillingSubscription().dump(gw.services.billing.subscription_for(me.id, slug)))


@route("POST", "/platform/organizations/<slug>/billing/subscription/preview",
       summary="Dry run of a plan change: what changes, which limits break, the prorated amount", tag="billing",
       body=PlanChangeBody, response=PlanChangePreview)
def billing_preview(gw: Any, request: Request, ctx: Ctx, slug: str) -> Response:
    me = gw.caller(request, ctx)
    data = gw.body(request, PlanChangeBody)
    return json_response(PlanChangePreview().dump(gw.services.billing.preview_change(me.id, slug, data)))


@route("PUT", "/platform/organizations/<slug>/billing/subscription",
       summary="Change plan or spend cap (owner); 402 naming the limit if the organization is past one",
       tag="billing", body=PlanChangeBody, response=PlanChangeResult)
def billing_change_plan(gw: Any, request: Request, ctx: Ctx, slug: str) -> Response:
    me = gw.caller(request, ctx)
    data = gw.body(request, PlanChangeBody)
    key = request.headers.get("Idempotency-Key")
    return json_response(PlanChangeResult().dump(gw.services.billing.change_plan(me.id, slug, data, key, ctx)))


@route("GET", "/platform/organizations/<slug>/billing/invoices", summary="Invoices, newest period first (owner, admin)",
       tag="billing", response=InvoiceSummary, many=True)
def billing_invoices(gw: Any, request: Request, ctx: Ctx, slug: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(InvoiceSummary(many=True).dump(gw.services.billing.list_invoices(me.id, slug)))


@route("GET", "/platform/organizations/<slug>/billing/invoices/<invoice_id>",
       summary="One invoice with its lines and the usage it rated (owner, admin)", tag="billing",
       response=InvoiceDetail)
def billing_invoice(gw: Any, request: Request, ctx: Ctx, slug: str, invoice_id: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(InvoiceDetail().dump(gw.services.billing.get_invoice(me.id, slug, invoice_id)))


@route("POST", "/platform/billing/stripe/webhook",
       summary="Stripe webhook endpoint: signature-checked (Stripe-Signature), each event applied once",
       tag="billing", response=WebhookAck, auth=False)
def billing_stripe_webhook(gw: Any, request: Request, ctx: Ctx) -> Response:
    if request.content_length and request.content_length > MAX_BODY:
        raise HttpError(413, "request body too large")
    # The signature covers the exact bytes sent: pass them on untouched.
    payload = request.get_data(cache=False, as_text=True)
    signature = request.headers.get("Stripe-Signature", "")
    return json_response(WebhookAck().dump(gw.services.billing.receive_stripe_event(payload, signature)))
