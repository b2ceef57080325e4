"""realtime nameko entrypoint: RPC for the gateway (a project's realtime settings, shutdowns,
its supabase_realtime publication) and for the realtime server (the settings in force).
Translates only; rules live in the application (services/realtime/usecases/)."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import RpcProxy, rpc

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, RemotePort, history_rpc

from .application import RealtimeApplication
from .bootstrap import build

Ctx = dict[str, Any] | None


class RealtimeService:
    name = "realtime"
    history = history_rpc()  # time travel over this service's store (admin panel)

    app: RealtimeApplication = ApplicationProvider(build)
    projects = RpcProxy("projects")
    orgs = RpcProxy("orgs")
    billing = RpcProxy("billing")

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
