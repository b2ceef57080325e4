"""Invocations of edge functions through a project's API URL: `{public_url}/p/<ref>/functions/v1/<slug>…`
goes, as it came, to the functions runtime, and its answer streams back.

No business rules here (the runtime verifies the JWT and runs the code) and no nameko: the
entrypoint in gateway/service.py calls `FunctionsProxy.forward` straight from the HTTP
server's green thread, so slow functions never occupy the gateway's RPC workers.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

import urllib3
from werkzeug.wrappers import Request, Response

from services.shared.settings import Settings

log = logging.getLogger("gateway.functions")

MAX_BODY = 20 * 1024 * 1024
REF = re.compile(r"^[a-z]{20}$")
SLUG_PATH = re.compile(r"^[A-Za-z0-9_-]+(/.*)?$")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


def _json(status: int, message: str, request_id: str) -> Response:
    return Response(json.dumps({"message": message}), status=status, mimetype="application/json",
                    headers={"X-Request-Id": request_id})


class FunctionsProxy:
    def __init__(self, settings: Settings, pool_size: int = 256):
        self.base = f"http://{settings.functions_runtime_host}:{settings.functions_runtime_port}"
        public = urlsplit(settings.public_url)
        self.public_host, self.public_proto = public.netloc, public.scheme or "http"
        # Timeouts: connecting is local and quick; reading is bounded by the runtime's own
        # wall-clock limit, plus a margin for it to say so.
        self.timeout = urllib3.Timeout(connect=5.0, read=settings.functions_wall_clock_s + 30.0)
        self.http = urllib3.PoolManager(num_pools=4, maxsize=pool_size, block=False, retries=False)

    def forward(self, request: Request, ref: str, rest: str) -> Response:
        request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
        if not REF.match(ref) or not SLUG_PATH.match(rest):
            return _json(404, "Requested function was not found", request_id)
        if request.content_length and request.content_length > MAX_BODY:
            return _json(413, f"request body larger than {MAX_BODY} bytes", request_id)
        body = request.get_data(cache=False) if request.method not in ("GET", "HEAD") else None
        if body is not None and len(body) > MAX_BODY:
            return _json(413, f"request body larger than {MAX_BODY} bytes", request_id)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Request-Id"] = request_id
        headers["X-Forwarded-Host"] = self.public_host or request.host
        headers["X-Forwarded-Proto"] = self.public_proto
        url = f"{self.base}/invoke/{ref}/{quote(rest, safe='/-_.~')}"
        if request.query_string:
            url += "?" + request.query_string.decode("latin-1")
        try:
            upstream = self.http.request(request.method, url, body=body, headers=headers, preload_content=False,
                                         decode_content=False, redirect=False, timeout=self.timeout)
        except urllib3.exceptions.HTTPError as exc:
            log.warning("functions runtime unreachable: %s", exc)
            return _json(502, "the functions runtime is unavailable; try again shortly", request_id)
        out_headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
        length = upstream.headers.get("Content-Length")
        if length is not None:
            out_headers.append(("Content-Length", length))
        response = Response(_stream(upstream), status=upstream.status, headers=out_headers, direct_passthrough=True)
        response.headers["X-Request-Id"] = request_id
        return response

    def close(self) -> None:
        self.http.clear()


def _stream(upstream: Any) -> Iterator[bytes]:
    try:
        yield from upstream.stream(64 * 1024, decode_content=False)
    finally:
        upstream.release_conn()
