"""Contracts published by the billing service (exchange `billing.events`).

Money is a string of an exact decimal with two places ("25.00", "-1.13"), never a float.
"""

from marshmallow import Schema, fields, validate

from .registry import contract

SLUG = validate.Regexp(r"^[\w-]+$")
PERIOD = validate.Regexp(r"^\d{4}-(0[1-9]|1[0-2])$")
MONEY = validate.Regexp(r"^-?\d+\.\d{2}$")
PLANS = ("free", "pro", "team", "enterprise")
STATUSES = ("open", "payment_failed", "uncollectible", "paid", "void")


@contract("plan_changed", 1, "billing", "An organization moved to another plan (upgrade or downgrade), from `effective_at`.")
class PlanChangedV1(Schema):
    org_slug = fields.String(required=True, validate=SLUG)
    previous_plan = fields.String(required=True, validate=validate.OneOf(PLANS))
    plan = fields.String(required=True, validate=validate.OneOf(PLANS))
    spend_cap = fields.Boolean(required=True, metadata={"description": "Usage past quota restricted (true) or billed"})
    effective_at = fields.String(required=True, metadata={"description": "ISO 8601 UTC time the new plan applies from"})
    proration_amount = fields.String(required=True, validate=MONEY,
                                     metadata={"description": "Base-fee difference for the rest of the period (negative: credit)"})


@contract("spend_cap_changed", 1, "billing", "An organization switched its spend cap on or off (same plan).")
class SpendCapChangedV1(Schema):
    org_slug = fields.String(required=True, validate=SLUG)
    plan = fields.String(required=True, validate=validate.OneOf(PLANS))
    spend_cap = fields.Boolean(required=True)
    effective_at = fields.String(required=True)


class InvoiceLineV1(Schema):
    line = fields.Integer(required=True, validate=validate.Range(min=1))
    kind = fields.String(required=True, validate=validate.OneOf(["base", "overage", "correction"]))
    metric = fields.String(required=True, allow_none=True)
    description = fields.String(required=True)
    amount = fields.String(required=True, validate=MONEY)


@contract("invoice_finalized", 1, "billing", "A billing period closed into an invoice; its lines and total never change.")
class InvoiceFinalizedV1(Schema):
    invoice_id = fields.String(required=True)
    org_slug = fields.String(required=True, validate=SLUG)
    period = fields.String(required=True, validate=PERIOD)
    period_start = fields.String(required=True)
    period_end = fields.String(required=True)
    currency = fields.String(required=True)
    total = fields.String(required=True, validate=MONEY)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    lines = fields.List(fields.Nested(InvoiceLineV1), required=True)


@contract("invoice_status_changed", 1, "billing", "An invoice's payment status changed (paid, payment failed, void...).")
class InvoiceStatusChangedV1(Schema):
    invoice_id = fields.String(required=True)
    org_slug = fields.String(required=True, validate=SLUG)
    period = fields.String(required=True, validate=PERIOD)
    previous_status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    source = fields.String(required=True, metadata={"description": "Who reported it: the payment provider (stripe, local)"})
