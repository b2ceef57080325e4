"""realtime nameko entrypoint: RPC for the gateway (a project's realtime settings, shutdowns,
its supabase_realtime publication) and for the realtime server (the settings in force).
Translates only; rules live in the application (services/realtime/usecases/)."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, RemotePort, TimedRpcProxy, history_rpc, reliable_handler

from .application import RealtimeApplication
from .adapters import RealtimeServerStats
from .bootstrap import build, build_server_stats

Ctx = dict[str, Any] | None


class RealtimeService:
    name = "realtime"
    history = history_rpc()  # time travel over this service's store (admin panel)

    app: RealtimeApplication = ApplicationProvider(build)
    server_stats: RealtimeServerStats = ApplicationProvider(build_server_stats)
    projects = TimedRpcProxy("projects")
    orgs = TimedRpcProxy("orgs")
    billing = TimedRpcProxy("billing")

    @rpc
    def health(self) -> dict[str, Any]:
        self.app.recorder.max_notification_id()
        return {"service": self.name, "status": "ok"}

    # -- config: settings and shutdowns --------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def get_realtime_config(self, user_id: str, ref: str) -> dict[str, Any]:
        return self.app.get_realtime_config(user_id, ref, RemotePort(self.projects))

    @rpc(expected_exceptions=EXPECTED)
    def realtime_settings_page(self, user_id: str, ref: str) -> dict[str, Any]:
        return self.app.realtime_settings_page(user_id, ref, RemotePort(self.projects), RemotePort(self.orgs),
                                               RemotePort(self.billing))

    @rpc(expected_exceptions=EXPECTED)
    def update_realtime_config(self, user_id: str, ref: str, body: dict[str, Any], ctx: Ctx = None) -> dict[str, Any]:
        return self.app.update_realtime_config(user_id, ref, body, RemotePort(self.projects), RemotePort(self.orgs),
                                               RemotePort(self.billing), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def shutdown_realtime(self, user_id: str, ref: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.shutdown_realtime(user_id, ref, RemotePort(self.projects), RemotePort(self.orgs),
                                          RemotePort(self.billing), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def realtime_config_row(self, ref: str) -> dict[str, Any]:
        """For the realtime server and the platform's own tools: the settings in force."""
        return self.app.config_row(ref)

    # -- the admin panel ------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def operator_view(self, actor_id: str) -> dict[str, Any]:
        return self.app.operator_view(actor_id, RemotePort(self.orgs), self.server_stats)

    # -- its own messages, applied where Supabase Realtime serves the project (kubernetes) -------
    @reliable_handler("realtime", "realtime_config_changed")
    def on_config_changed(self, envelope: dict[str, Any]) -> None:
        self.app.apply_to_runtime(envelope)

    @reliable_handler("realtime", "realtime_shutdown_requested")
    def on_shutdown_requested(self, envelope: dict[str, Any]) -> None:
        self.app.apply_to_runtime(envelope)

    # -- publication: which tables publish Postgres changes -------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def get_publication(self, user_id: str, ref: str) -> dict[str, Any]:
        return self.app.get_publication(user_id, ref, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def update_publication(self, user_id: str, ref: str, body: dict[str, Any], ctx: Ctx = None) -> dict[str, Any]:
        return self.app.update_publication(user_id, ref, body, RemotePort(self.projects), RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def publication_history(self, ref: str) -> list[dict[str, Any]]:
        """For the platform's own tools: every recorded change of the project's publication."""
        return self.app.publication_history(ref)
