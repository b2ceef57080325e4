"""projects nameko entrypoint: RPC for the gateway and the provisioner, and handlers for
the provisioner's outcomes. Translates only; rules live in the application."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, history_rpc, reliable_handler, RemotePort, TimedRpcProxy

from .application import ProjectsApplication
from .bootstrap import build

Ctx = dict[str, Any] | None


class ProjectsService:
    name = "projects"
    history = history_rpc()  # time travel over this service's store (admin panel)

    app: ProjectsApplication = ApplicationProvider(build)
    orgs = TimedRpcProxy("orgs")
    billing = TimedRpcProxy("billing")
    provisioner = TimedRpcProxy("provisioner")

    @rpc
    def health(self) -> dict[str, Any]:
        self.app.recorder.max_notification_id()
        return {"service": self.name, "status": "ok"}

    # -- users (through the gateway) ---------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def create_project(self, user_id: str, body: dict[str, Any], idempotency_key: str | None = None,
                       ctx: Ctx = None) -> dict[str, Any]:
        return self.app.create_project(user_id, body, RemotePort(self.orgs), RemotePort(self.billing),
                                       idempotency_key, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def list_projects(self, user_id: str, org_slugs: list[str] | None = None) -> list[dict[str, Any]]:
        return self.app.list_projects(user_id, RemotePort(self.orgs), org_slugs)

    @rpc(expected_exceptions=EXPECTED)
    def list_projects_json(self, org_slugs: list[str]) -> str:
        return self.app.list_projects_json(org_slugs)

    @rpc(expected_exceptions=EXPECTED)
    def get_project(self, user_id: str, ref: str, org_slugs: list[str] | None = None) -> dict[str, Any]:
        return self.app.get_project(user_id, ref, RemotePort(self.orgs), org_slugs)

    @rpc(expected_exceptions=EXPECTED)
    def pause_project(self, user_id: str, ref: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.pause_project(user_id, ref, RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def restore_project(self, user_id: str, ref: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.restore_project(user_id, ref, RemotePort(self.orgs), RemotePort(self.billing), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def delete_project(self, user_id: str, ref: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.delete_project(user_id, ref, RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def api_keys(self, user_id: str, ref: str) -> list[dict[str, Any]]:
        return self.app.api_keys(user_id, ref, RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def rotate_jwt_secret(self, user_id: str, ref: str, ctx: Ctx = None) -> list[dict[str, Any]]:
        return self.app.rotate_jwt_secret(user_id, ref, RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def project_health(self, user_id: str, ref: str, services: list[str]) -> list[dict[str, Any]]:
        return self.app.health(user_id, ref, services, RemotePort(self.orgs), RemotePort(self.provisioner))

    @rpc(expected_exceptions=EXPECTED)
    def get_postgrest(self, user_id: str, ref: str) -> dict[str, Any]:
        return self.app.get_postgrest(user_id, ref, RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def update_postgrest(self, user_id: str, ref: str, changes: dict[str, Any], ctx: Ctx = None) -> dict[str, Any]:
        return self.app.update_postgrest(user_id, ref, changes, RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def get_auth_config(self, user_id: str, ref: str) -> dict[str, Any]:
        return self.app.get_auth_config(user_id, ref, RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def update_auth_config(self, user_id: str, ref: str, changes: dict[str, Any], ctx: Ctx = None) -> dict[str, Any]:
        return self.app.update_auth_config(user_id, ref, changes, RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def settings_history(self, user_id: str, ref: str) -> list[dict[str, Any]]:
        return self.app.settings_history(user_id, ref, RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def rollback_settings(self, user_id: str, ref: str, version: int, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.rollback_settings(user_id, ref, version, RemotePort(self.orgs), ctx)

    # -- platform admins (orgs confirms the admin flag) ------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def admin_list_projects(self, user_id: str) -> list[dict[str, Any]]:
        return self.app.admin_list_projects(user_id, RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def admin_project_action(self, user_id: str, ref: str, action: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.admin_project_action(user_id, ref, action, RemotePort(self.orgs), RemotePort(self.billing),
                                             ctx)

    # -- other services ------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def count_projects(self, org_slug: str) -> int:
        return self.app.count_projects(org_slug)

    @rpc(expected_exceptions=EXPECTED)
    def get_tenant_credentials(self, ref: str) -> dict[str, str]:
        return self.app.get_tenant_credentials(ref)

    @rpc(expected_exceptions=EXPECTED)
    def edge_tenant(self, ref: str) -> dict[str, Any]:
        return self.app.edge_tenant(ref)
    def get_tenant_auth_config(self, ref: str) -> dict[str, Any]:
        return self.app.get_tenant_auth_config(ref)

    @rpc(expected_exceptions=EXPECTED)
    def project_org(self, ref: str) -> str:
        return self.app.project_org(ref)

    @rpc(expected_exceptions=EXPECTED)
    def list_active_projects(self) -> list[dict[str, Any]]:
        return self.app.list_active_projects()

    # -- provisioner outcomes ------------------------------------------------------------------
    @reliable_handler("provisioner", "provisioning_step_started")
    def on_step_started(self, envelope: dict[str, Any]) -> None:
        self.app.apply_progress(envelope)

    @reliable_handler("provisioner", "project_provisioned")
    def on_provisioned(self, envelope: dict[str, Any]) -> None:
        self.app.apply_completion(envelope, "create")

    @reliable_handler("provisioner", "project_paused")
    def on_paused(self, envelope: dict[str, Any]) -> None:
        self.app.apply_completion(envelope, "pause")

    @reliable_handler("provisioner", "project_restored")
    def on_restored(self, envelope: dict[str, Any]) -> None:
        self.app.apply_completion(envelope, "restore")

    @reliable_handler("provisioner", "project_removed")
    def on_removed(self, envelope: dict[str, Any]) -> None:
        self.app.apply_completion(envelope, "delete")

    @reliable_handler("provisioner", "provisioning_failed")
    def on_failed(self, envelope: dict[str, Any]) -> None:
        self.app.apply_failure(envelope)
