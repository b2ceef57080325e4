"""Wires the billing application to its store, its subscription index and its payment
adapters, from settings (read once, by the process that calls `build`)."""

from __future__ import annotations

from pathlib import Path

from services.shared.db import make_pool
from services.shared.eventstore import open_application
from services.shared.settings import Settings

from .adapters import LocalPayments, StripePayments, StripeWebhooks
from .application import BillingApplication, PaymentsPort, WebhookVerifier
from .subscriptions import DDL, SCHEMA, MemorySubscriptions, Subscriptions

ROOT = Path(__file__).resolve().parents[2]


def build(settings: Settings, *, in_memory: bool = False) -> BillingApplication:
    app = open_application(BillingApplication, settings, in_memory=in_memory)
    if in_memory:
        app.index = MemorySubscriptions()
    else:
        app.index = Subscriptions(make_pool(settings, SCHEMA, DDL, max_size=4))
    return app


def payments(settings: Settings) -> PaymentsPort:
    if settings.payments_provider == "stripe":
        return StripePayments(settings.stripe_secret_key, settings.stripe_api_base)
    if settings.payments_provider != "local":
        raise ValueError(f"PLATFORM_PAYMENTS_PROVIDER={settings.payments_provider!r}: local or stripe")
    base = Path(settings.state_dir)
    return LocalPayments((base if base.is_absolute() else ROOT / base) / "invoices")


def webhooks(settings: Settings) -> WebhookVerifier | None:
    return StripeWebhooks(settings.stripe_webhook_secret) if settings.stripe_webhook_secret else None
