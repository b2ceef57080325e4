"""The edge's functions upstream: `<project URL>/functions/v1/<slug>…` goes to the functions
runtime as `/invoke/<ref>/<slug>…` (the only route of the runtime the edge ever calls), with
the request body streamed and capped, and the answer streamed back.

No business rules here: the runtime verifies the JWT and runs the code. Imports aiohttp,
the standard library, shared settings and the edge's own types.
"""

from __future__ import annotations

import re
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web
from yarl import URL

from services.shared.settings import Settings

from .app import Call, Upstreamed

SLUG_PATH = re.compile(r"^/[A-Za-z0-9_-]+(/.*)?$")


class BodyTooLarge(Exception):
    pass


class FunctionsUpstream:
    prefix = "functions/v1"
    key_required = False  # as on Supabase: the runtime verifies the JWT (per function's verify_jwt)
    cors = False  # the function's own code answers CORS, as on Supabase

    def __init__(self, settings: Settings):
        self.base = f"http://{settings.functions_runtime_host}:{settings.functions_runtime_port}"
        self.max_body = settings.functions_max_request_mb * 1024 * 1024
        # Reading is bounded by the runtime's own wall clock, plus a margin for it to say so.
        self.timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=settings.functions_wall_clock_s + 30.0)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30), auto_decompress=False,
                timeout=self.timeout)
        return self._session

    async def open(self, call: Call) -> web.StreamResponse | Upstreamed:
        request = call.request
        if not SLUG_PATH.match(call.rest):
            return web.json_response({"message": "Requested function was not found"}, status=404)
        if request.content_length is not None and request.content_length > self.max_body:
            return web.json_response({"message": f"request body larger than {self.max_body} bytes"}, status=413)
        query = request.raw_path.partition("?")[2]
        url = URL(f"{self.base}/invoke/{call.ref}{call.rest}" + (f"?{query}" if query else ""), encoded=True)
        data: Any = None
        if request.method not in ("GET", "HEAD") and request.body_exists:
            data = self._capped(request.content)
            if request.content_length is not None:
                call.headers["Content-Length"] = str(request.content_length)
        try:
            upstream = await self.session().request(request.method, url, headers=call.headers, data=data,
                                                    allow_redirects=False)
        except BodyTooLarge:
            return web.json_response({"message": f"request body larger than {self.max_body} bytes"}, status=413)
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, BodyTooLarge) or "too large" in str(exc):
                return web.json_response({"message": f"request body larger than {self.max_body} bytes"}, status=413)
            return web.json_response({"message": "the functions runtime is unavailable; try again shortly"}, status=502)
        return Upstreamed(status=upstream.status, reason=upstream.reason, headers=upstream.headers,
                          body=upstream.content.iter_any(), release=upstream.release)

    async def _capped(self, content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in content.iter_any():
            sent += len(chunk)
            if sent > self.max_body:
                raise BodyTooLarge()
            yield chunk

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
