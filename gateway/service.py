"""The gateway as a nameko service: HTTP entrypoint + RPC proxies, nothing else."""

import services.shared.greenpg  # noqa: F401

from typing import Any

from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Request, Response

from .app import Gateway

METHODS = "GET,POST,PUT,PATCH,DELETE"


class GatewayService:
    name = "gateway"

    orgs = RpcProxy("orgs")
    billing = RpcProxy("billing")

    @http(METHODS, "/")
    def root(self, request: Request) -> Response:
        return Gateway(self).handle(request)

    @http(METHODS, "/<path:path>")
    def route(self, request: Request, path: str) -> Response:
        return Gateway(self).handle(request)
