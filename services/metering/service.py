"""metering nameko entrypoint: usage queries, budgets and alerts over RPC; the tenant sampler
and the alert checker on a timer; alert mail from its own alert events. Translates only.

Usage messages are folded by the separate consumer process (services/metering/consumer.py).
"""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc
from nameko.timer import timer

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, RemotePort, reliable_handler, TimedRpcProxy

from .application import MeteringApplication
from .bootstrap import build

Ctx = dict[str, Any] | None


class MeteringService:
    name = "metering"

    app: MeteringApplication = ApplicationProvider(build)
    projects = TimedRpcProxy("projects")
    billing = TimedRpcProxy("billing")
    orgs = TimedRpcProxy("orgs")

    @rpc
    def health(self) -> dict[str, Any]:
        self.app.recorder.max_notification_id()
        return {"service": self.name, "status": "ok"}

    # -- usage (gateway, billing) ----------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def query_usage(self, org_slug: str, project_ref: str | None, metric: str, start_iso: str, end_iso: str,
                    granularity: str) -> list[dict[str, Any]]:
        return self.app.query_usage(org_slug, project_ref, metric, start_iso, end_iso, granularity)

    @rpc(expected_exceptions=EXPECTED)
    def period_totals(self, org_slug: str, start_iso: str, end_iso: str) -> dict[str, int]:
        return self.app.period_totals(org_slug, start_iso, end_iso)

    # -- budgets and alerts (gateway; callers are authorised there) --------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def set_budget(self, org_slug: str, project_ref: str, metric: str, limit: int, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.set_budget(org_slug, project_ref, metric, limit, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def remove_budget(self, org_slug: str, project_ref: str, metric: str, ctx: Ctx = None) -> None:
        self.app.remove_budget(org_slug, project_ref, metric, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def list_budgets(self, org_slug: str, project_ref: str) -> list[dict[str, Any]]:
        return self.app.list_budgets(org_slug, project_ref)

    @rpc(expected_exceptions=EXPECTED)
    def list_alerts(self, org_slug: str, limit: int = 100) -> list[dict[str, Any]]:
        return self.app.list_alerts(org_slug, limit)

    # -- operators ---------------------------------------------------------------------------------
    @rpc
    def verify_usage(self) -> list[str]:
        return self.app.verify_usage()

    @rpc
    def rebuild_usage(self) -> int:
        return self.app.rebuild_usage()

    # -- periodic work (each checks whether it is due: intervals come from settings) -------------
    @timer(interval=1)
    def sample_tenants(self) -> None:
        self.app.sample_if_due(RemotePort(self.projects))

    @timer(interval=1)
    def check_alerts(self) -> None:
        self.app.check_alerts_if_due(RemotePort(self.billing))

    # -- alert mail ---------------------------------------------------------------------------------
    @reliable_handler("metering", "usage_alert_triggered")
    def on_usage_alert(self, envelope: dict[str, Any]) -> None:
        self.app.notify_alert(envelope, RemotePort(self.orgs))
