"""billing nameko entrypoint: RPC for the gateway, projects and operators, the
organization_created handler and the period-close timer. Translates only; the rules live
in the application."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, history_rpc, reliable_handler, RemotePort, TimedRpcProxy
from services.shared.settings import load_settings

from .application import BillingApplication, PaymentsPort, WebhookVerifier
from .bootstrap import build, payments, webhooks

Ctx = dict[str, Any] | None
# How often the timer closes ended periods (a no-op for organizations already invoiced).
CLOSE_INTERVAL_S = 3600


class Adapters(DependencyProvider):
    """The payment provider and webhook verifier, built once per process from settings."""

    def setup(self) -> None:
        settings = load_settings()
        self.payments: PaymentsPort = payments(settings)
        self.webhooks: WebhookVerifier | None = webhooks(settings)

    def get_dependency(self, worker_ctx: Any) -> "Adapters":
        return self


class BillingService:
    name = "billing"
    history = history_rpc()  # time travel over this service's store (admin panel)

    app: BillingApplication = ApplicationProvider(build)
    adapters: Adapters = Adapters()
    orgs = TimedRpcProxy("orgs")
    projects = TimedRpcProxy("projects")
    metering = TimedRpcProxy("metering")

    @rpc
    def health(self) -> dict[str, Any]:
        self.app.recorder.max_notification_id()
        return {"service": self.name, "status": "ok"}

    # -- orgs events ---------------------------------------------------------------------------
    @reliable_handler("orgs", "organization_created", versions=[1])
    def on_organization_created(self, envelope: dict[str, Any]) -> None:
        self.app.start_subscription(envelope)

    # -- other services ------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def get_subscription(self, org_slug: str) -> dict[str, Any]:
        return self.app.get_subscription(org_slug)

    @rpc(expected_exceptions=EXPECTED)
    def get_entitlements(self, org_slug: str) -> dict[str, Any]:
        return self.app.get_entitlements(org_slug)

    @rpc(expected_exceptions=EXPECTED)
    def check_usage(self, org_slug: str, metric: str | None = None) -> dict[str, Any]:
        return self.app.check_usage(org_slug, RemotePort(self.metering), metric)

    # -- users (through the gateway) ---------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def list_plans(self) -> list[dict[str, Any]]:
        return self.app.list_plans()

    @rpc(expected_exceptions=EXPECTED)
    def subscription_for(self, user_id: str, slug: str) -> dict[str, Any]:
        return self.app.subscription_for(user_id, slug, RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def preview_change(self, user_id: str, slug: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.app.preview_change(user_id, slug, body, RemotePort(self.orgs), RemotePort(self.projects),
                                       RemotePort(self.metering))

    @rpc(expected_exceptions=EXPECTED)
    def change_plan(self, user_id: str, slug: str, body: dict[str, Any], idempotency_key: str | None = None,
                    ctx: Ctx = None) -> dict[str, Any]:
        return self.app.change_plan(user_id, slug, body, RemotePort(self.orgs), RemotePort(self.projects),
                                    idempotency_key, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def list_invoices(self, user_id: str, slug: str) -> list[dict[str, Any]]:
        return self.app.list_invoices(user_id, slug, RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def get_invoice(self, user_id: str, slug: str, invoice_id: str) -> dict[str, Any]:
        return self.app.get_invoice(user_id, slug, invoice_id, RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def receive_stripe_event(self, payload: str, signature: str) -> dict[str, Any]:
        return self.app.receive_provider_event(payload, signature, self.adapters.webhooks)

    # -- operators -----------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def close_period(self, org_slug: str, period: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.close_period(org_slug, period, RemotePort(self.metering), self.adapters.payments, ctx)

    @rpc
    def reset_subscriptions(self) -> None:
        self.app.reset_index()

    @timer(interval=CLOSE_INTERVAL_S)
    def close_due_periods(self) -> None:
        self.app.close_due_periods(RemotePort(self.metering), self.adapters.payments)
