"""The gateway as a nameko service: HTTP entrypoint, RPC proxies and the session store."""

import services.shared.greenpg  # noqa: F401

from datetime import timedelta
from typing import Any

from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Request, Response

from services.shared.nameko_ext import ApplicationProvider, SettingsProvider, make_pool
from services.shared.settings import Settings

from .app import Gateway
from .sessions import DDL, SqlSessionStore

METHODS = "GET,POST,PUT,PATCH,DELETE"


def _sessions(settings: Settings) -> SqlSessionStore:
    return SqlSessionStore(make_pool(settings, "gateway", DDL), timedelta(hours=settings.session_ttl_hours))


class GatewayService:
    name = "gateway"

    orgs = RpcProxy("orgs")
    billing = RpcProxy("billing")
    projects = RpcProxy("projects")
    sessions: Any = ApplicationProvider(_sessions)
    settings: Any = SettingsProvider()

    def _handle(self, request: Request) -> Response:
        return Gateway(self, self.sessions, self.settings).handle(request)

    @http(METHODS, "/")
    def root(self, request: Request) -> Response:
        return self._handle(request)

    @http(METHODS, "/<path:path>")
    def route(self, request: Request, path: str) -> Response:
        return self._handle(request)
