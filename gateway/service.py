"""The gateway as a nameko service: HTTP entrypoint, RPC proxies and the session store."""

import services.shared.greenpg  # noqa: F401

from datetime import timedelta
from typing import Any

from nameko.rpc import RpcProxy
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.web.handlers import HttpRequestHandler, http
from werkzeug.wrappers import Request, Response

from services.shared.nameko_ext import ApplicationProvider, RemotePort, SettingsProvider, make_pool
from services.shared.settings import Settings, load_settings

from .app import Gateway
from .functions_proxy import FunctionsProxy
from .sessions import DDL, SqlSessionStore
from .usage import UsageMeter, build_meter

METHODS = "GET,POST,PUT,PATCH,DELETE"


def _sessions(settings: Settings) -> SqlSessionStore:
    return SqlSessionStore(make_pool(settings, "gateway", DDL), timedelta(hours=settings.session_ttl_hours))


class FunctionInvocation(HttpRequestHandler):
    """`/p/<ref>/functions/v1/<slug>…`: proxied to the functions runtime straight from the
    HTTP server's green thread, without a nameko worker, so long-running functions never
    hold the workers the Management API needs (max_workers)."""

    def setup(self) -> None:
        super().setup()
        self.settings = load_settings()
        self.proxy = FunctionsProxy(self.settings)

    def stop(self) -> None:
        self.proxy.close()
        super().stop()

    def handle_request(self, request: Request) -> Response:
        request.shallow = False
        values = request.path_values  # type: ignore[attr-defined]
        response = self.proxy.forward(request, values["ref"], values["rest"])
        # The project API counts as project usage (requests, egress) like any project route.
        return self._usage_meter().observe(request, response, self._project_org)

    def _usage_meter(self) -> UsageMeter:
        return next(d.app for d in self.container.dependencies if getattr(d, "attr_name", None) == "usage")

    def _project_org(self, ref: str) -> str:
        # No worker (so no RpcProxy) here; the meter asks once per project and process.
        with ServiceRpcProxy("projects", {"AMQP_URI": self.settings.amqp_uri}, timeout=10) as projects:
            return str(projects.project_org(ref))


function_invocation = FunctionInvocation.decorator


class GatewayService:
    name = "gateway"

    orgs = RpcProxy("orgs")
    billing = RpcProxy("billing")
    projects = RpcProxy("projects")
    functions = RpcProxy("functions")
    metering = RpcProxy("metering")
    sessions: Any = ApplicationProvider(_sessions)
    usage: UsageMeter = ApplicationProvider(build_meter)
    settings: Any = SettingsProvider()

    def _handle(self, request: Request) -> Response:
        response = Gateway(self, self.sessions, self.settings).handle(request)
        # Usage per project (requests, egress) for metering; counted in memory, sent in batches.
        return self.usage.observe(request, response, RemotePort(self.projects).project_org)

    @http(METHODS, "/")
    def root(self, request: Request) -> Response:
        return self._handle(request)

    @function_invocation("GET,POST,PUT,PATCH,DELETE,OPTIONS,HEAD", "/p/<ref>/functions/v1/<path:rest>")
    def invoke_function(self, request: Request, ref: str, rest: str) -> Response:  # pragma: no cover
        raise AssertionError("served by FunctionInvocation.handle_request")

    @http(METHODS, "/<path:path>")
    def route(self, request: Request, path: str) -> Response:
        return self._handle(request)
