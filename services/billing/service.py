"""billing nameko entrypoint: RPC and event handlers translate to the read model."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, make_pool, reliable_handler

from .subscriptions import DDL, SCHEMA, Subscriptions


class BillingService:
    name = "billing"

    subscriptions: Subscriptions = ApplicationProvider(lambda s: Subscriptions(make_pool(s, SCHEMA, DDL)))

    @rpc
    def health(self) -> dict[str, Any]:
        with self.subscriptions.pool.connection() as conn:
            conn.execute("SELECT 1")
        return {"service": self.name, "status": "ok"}

    @reliable_handler("orgs", "organization_created", versions=[1])
    def on_organization_created(self, envelope: dict[str, Any]) -> None:
        self.subscriptions.start_free_plan(envelope)

    @rpc(expected_exceptions=EXPECTED)
    def get_subscription(self, org_slug: str) -> dict[str, Any]:
        return self.subscriptions.get(org_slug)

    @rpc(expected_exceptions=EXPECTED)
    def get_entitlements(self, org_slug: str) -> dict[str, Any]:
        return self.subscriptions.entitlements(org_slug)

    @rpc
    def reset_subscriptions(self) -> None:
        self.subscriptions.reset()
