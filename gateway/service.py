"""The gateway as a nameko service: HTTP entrypoint, RPC proxies and the session store."""

import services.shared.greenpg  # noqa: F401

import json
from datetime import timedelta
from typing import Any

from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from services.shared.nameko_ext import (ApplicationProvider, LeanRpcProxy, RemotePort, SettingsProvider,
                                        TimedRpcProxy, broadcast_handler, make_pool)
from services.shared.settings import Settings, load_settings

from .app import Gateway
from .authcache import AuthCache
from .guard import early_refusal
from .logredact import install as redact_access_logs
from .paths import unsafe_path
from .ratelimit import build_limiter
from .sessions import DDL, SqlSessionStore
from .studio import DDL as STUDIO_DDL
from .usage import GatewayMeter, build_meter

METHODS = "GET,POST,PUT,PATCH,DELETE"


# orgs' events after which a cached identity may be wrong (gateway/authcache.py); the literal
# is read by services/shared/contracts/consumers.py for docs/events.md's "consumed by" column.
ACCEPTS: tuple[tuple[str, str, int], ...] = (
    ("orgs", "token_revoked", 1), ("orgs", "user_access_changed", 1), ("orgs", "user_admin_changed", 1),
    ("orgs", "member_added", 1), ("orgs", "member_role_changed", 1), ("orgs", "member_removed", 1),
    ("orgs", "ownership_transferred", 1), ("orgs", "organization_updated", 1), ("orgs", "organization_deleted", 1))


def _identity_handler(producer: str, event_type: str) -> Any:
    # Every gateway process has its own queue (BROADCAST), auto-deleted with it; a missed
    # message costs at most the cache's TTL, so no retries or dead letters here.
    @broadcast_handler(producer, event_type)
    def handle(self: "GatewayService", envelope: dict[str, Any]) -> None:
        self.auth_cache.on_event(envelope)

    handle.__name__ = f"on_{event_type}"
    return handle


class JsonWsgiApp(WsgiApp):
    """nameko's WSGI app, except that what its own routing refuses (a path no rule matches,
    such as one with a newline, which `<path:path>` does not take) is answered in JSON like
    every other gateway error, not with werkzeug's HTML page."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
            request.path_values = values
            rv = provider.handle_request(request)
        except HTTPException as exc:
            message = f"no route for {request.path}" if exc.code == 404 else (exc.description or "error")
            rv = Response(json.dumps({"message": message}), status=exc.code or 400, mimetype="application/json",
                          headers={"Cache-Control": "no-store"})
        return rv(environ, start_response)


class JsonWebServer(WebServer):
    def get_wsgi_app(self) -> Any:
        return JsonWsgiApp(self)


class GuardedHttpRequestHandler(HttpRequestHandler):
    """nameko's HTTP entrypoint; refusals that need no worker (gateway/guard.py) come first."""

    server = JsonWebServer()

    def handle_request(self, request: Request) -> Any:
        refused = early_refusal(request)
        if refused is not None:
            return refused
        return super().handle_request(request)


http = GuardedHttpRequestHandler.decorator
redact_access_logs()  # tokens never reach the access log


def _sessions(settings: Settings) -> SqlSessionStore:
    return SqlSessionStore(make_pool(settings, "gateway", DDL + STUDIO_DDL), timedelta(hours=settings.session_ttl_hours),
                           timedelta(minutes=settings.session_idle_minutes))


class GatewayService:
    name = "gateway"

    # The read path's services: lean requests (services/shared/nameko_ext.py, LeanRpcProxy); the
    # others through nameko's proxy. Both give up after rpc_timeout_s (RpcTimeout: a 503).
    orgs = LeanRpcProxy("orgs")
    billing = TimedRpcProxy("billing")
    projects = LeanRpcProxy("projects")
    functions = TimedRpcProxy("functions")
    metering = TimedRpcProxy("metering")
    provisioner = TimedRpcProxy("provisioner")  # only for sagas' history (admin panel)
    database = TimedRpcProxy("database")
    realtime = TimedRpcProxy("realtime")
    sessions: Any = ApplicationProvider(_sessions)
    usage: GatewayMeter = ApplicationProvider(build_meter)
    limiter: Any = ApplicationProvider(build_limiter)
    settings: Any = SettingsProvider()
    auth_cache: AuthCache = ApplicationProvider(lambda s: AuthCache(s.gateway_auth_cache_ttl_s))

    for _producer, _event_type, _version in ACCEPTS:
        locals()[f"on_{_event_type}"] = _identity_handler(_producer, _event_type)
    del _producer, _event_type, _version

    def _handle(self, request: Request) -> Response:
        # The raw path, before werkzeug decodes it: dot segments and their encodings never route.
        why = unsafe_path(request.environ.get("RAW_PATH_INFO") or request.environ.get("REQUEST_URI") or request.path)
        if why:
            return Response(json.dumps({"message": why}), status=400, mimetype="application/json")
        response = Gateway(self, self.sessions, self.settings, self.auth_cache, self.limiter).handle(request)
        # Usage per project (requests, egress) for metering; counted in memory, sent in batches.
        return self.usage.observe(request, response, RemotePort(self.projects).project_org)

    @http(METHODS, "/")
    def root(self, request: Request) -> Response:
        return self._handle(request)

    @http(METHODS, "/<path:path>")
    def route(self, request: Request, path: str) -> Response:
        return self._handle(request)
