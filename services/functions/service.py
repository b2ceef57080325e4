"""functions nameko entrypoint: RPC for the gateway (functions, versions, secrets, logs) and
handlers for the provisioner's outcomes. Translates only; rules live in the application.
Invocations do not come here: the runtime (services/functions/runtime) serves them."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

import base64
import zlib
from typing import Any

from nameko.rpc import rpc

from services.shared.errors import EXPECTED, InvalidInput
from services.shared.nameko_ext import ApplicationProvider, history_rpc, reliable_handler, RemotePort, TimedRpcProxy

from .application import FunctionsApplication
from .bootstrap import build
from .bundles import MAX_BUNDLE_BYTES

Ctx = dict[str, Any] | None


def _inflate(content: str) -> bytes:
    """One uploaded file, decompressed no further than the bundle limit (no zip bombs)."""
    d = zlib.decompressobj()
    data = d.decompress(base64.b64decode(content), MAX_BUNDLE_BYTES + 1)
    if len(data) > MAX_BUNDLE_BYTES or d.unconsumed_tail:
        raise InvalidInput(f"file: larger than the {MAX_BUNDLE_BYTES} byte bundle limit")
    return data


class FunctionsService:
    name = "functions"
    history = history_rpc()  # time travel over this service's store (admin panel)

    app: FunctionsApplication = ApplicationProvider(build)
    projects = TimedRpcProxy("projects")
    orgs = TimedRpcProxy("orgs")

    @rpc
    def health(self) -> dict[str, Any]:
        self.app.recorder.max_notification_id()
        return {"service": self.name, "status": "ok"}

    # -- functions -----------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def deploy_function(self, user_id: str, ref: str, slug: str, metadata: dict[str, Any],
                        files: list[list[Any]], bundle_only: bool = False, ctx: Ctx = None) -> dict[str, Any]:
        # Files cross RPC as [path, base64 of zlib] pairs: JSON has no bytes, and sources
        # compress well (see gateway/functions_routes.py).
        raw = [(str(path), _inflate(content)) for path, content in files]
        return self.app.deploy_function(user_id, ref, slug, metadata, raw, bundle_only, RemotePort(self.projects),
                                        RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def create_function(self, user_id: str, ref: str, body: dict[str, Any], ctx: Ctx = None) -> dict[str, Any]:
        return self.app.create_function(user_id, ref, body, RemotePort(self.projects), RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def update_function(self, user_id: str, ref: str, slug: str, changes: dict[str, Any],
                        ctx: Ctx = None) -> dict[str, Any]:
        return self.app.update_function(user_id, ref, slug, changes, RemotePort(self.projects),
                                        RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def bulk_update_functions(self, user_id: str, ref: str, items: list[dict[str, Any]],
                              ctx: Ctx = None) -> list[dict[str, Any]]:
        return self.app.bulk_update_functions(user_id, ref, items, RemotePort(self.projects),
                                              RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def rollback_function(self, user_id: str, ref: str, slug: str, version: int | None = None,
                          ctx: Ctx = None) -> dict[str, Any]:
        return self.app.rollback_function(user_id, ref, slug, version, RemotePort(self.projects),
                                          RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def delete_function(self, user_id: str, ref: str, slug: str, ctx: Ctx = None) -> None:
        self.app.delete_function(user_id, ref, slug, RemotePort(self.projects), RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def list_functions(self, user_id: str, ref: str) -> list[dict[str, Any]]:
        return self.app.list_functions(user_id, ref, RemotePort(self.projects))

    @rpc(expected_exceptions=EXPECTED)
    def get_function(self, user_id: str, ref: str, slug: str) -> dict[str, Any]:
        return self.app.get_function(user_id, ref, slug, RemotePort(self.projects))

    @rpc(expected_exceptions=EXPECTED)
    def list_function_versions(self, user_id: str, ref: str, slug: str) -> list[dict[str, Any]]:
        return self.app.list_versions(user_id, ref, slug, RemotePort(self.projects))

    @rpc(expected_exceptions=EXPECTED)
    def get_function_body(self, user_id: str, ref: str, slug: str) -> dict[str, Any]:
        body = self.app.get_function_body(user_id, ref, slug, RemotePort(self.projects))
        body["files"] = [{"name": f["name"], "content": base64.b64encode(zlib.compress(f["content"])).decode()}
                         for f in body["files"]]
        return body

    @rpc(expected_exceptions=EXPECTED)
    def function_logs(self, user_id: str, ref: str, slug: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        return self.app.function_logs(user_id, ref, slug, query, RemotePort(self.projects))

    @rpc(expected_exceptions=EXPECTED)
    def project_logs(self, user_id: str, ref: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every function's log lines and invocation records of a project (the logs explorer)."""
        return self.app.function_logs(user_id, ref, None, query, RemotePort(self.projects))

    # -- secrets -------------------------------------------------------------------------------
    @rpc(expected_exceptions=EXPECTED)
    def list_secrets(self, user_id: str, ref: str) -> list[dict[str, Any]]:
        return self.app.list_secrets(user_id, ref, RemotePort(self.projects))

    @rpc(expected_exceptions=EXPECTED)
    def set_secrets(self, user_id: str, ref: str, items: list[dict[str, Any]], ctx: Ctx = None) -> None:
        self.app.set_secrets(user_id, ref, items, RemotePort(self.projects), RemotePort(self.orgs), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def delete_secrets(self, user_id: str, ref: str, names: list[str], ctx: Ctx = None) -> list[str]:
        return self.app.delete_secrets(user_id, ref, names, RemotePort(self.projects), RemotePort(self.orgs), ctx)

    # -- the provisioner's outcomes: where each tenant's database is -----------------------------
    @reliable_handler("provisioner", "project_provisioned")
    def on_provisioned(self, envelope: dict[str, Any]) -> None:
        self.app.apply_tenant_event(envelope, "ACTIVE")

    @reliable_handler("provisioner", "project_restored")
    def on_restored(self, envelope: dict[str, Any]) -> None:
        self.app.apply_tenant_event(envelope, "ACTIVE")

    @reliable_handler("provisioner", "project_paused")
    def on_paused(self, envelope: dict[str, Any]) -> None:
        self.app.apply_tenant_event(envelope, "INACTIVE")

    @reliable_handler("provisioner", "project_removed")
    def on_removed(self, envelope: dict[str, Any]) -> None:
        self.app.apply_tenant_event(envelope, "REMOVED")
