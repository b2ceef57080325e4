"""The edge's realtime upstream: `<project URL>/realtime/v1/websocket` (a WebSocket, frames
passed through both ways, text and binary) and `<project URL>/realtime/v1/api/broadcast` go
to the realtime server (services/realtime/server) as `/v1/<ref>/websocket` and
`/v1/<ref>/api/broadcast`; nothing else of it is reachable from outside.

The edge has checked the apikey (`?apikey=` on the socket, as realtime-js sends it); the
server checks it again, and every token, itself. Imports aiohttp, the standard library,
shared settings and the edge's own types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from services.shared.settings import Settings

from .app import Call, Upstreamed

log = logging.getLogger("gateway.edge.realtime")

MAX_BODY = 4 * 1024 * 1024
FORWARDED = ("apikey", "authorization", "content-type", "x-client-info", "x-request-id", "x-forwarded-for",
             "x-forwarded-host", "x-forwarded-proto", "user-agent")


class RealtimeUpstream:
    prefix = "realtime/v1"
    cors = True

    def __init__(self, settings: Settings):
        self.base = f"http://{settings.realtime_host}:{settings.realtime_port}"
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30), auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=30.0))
        return self._session

    def _headers(self, call: Call) -> dict[str, str]:
        return {k: v for k, v in call.headers.items() if k.lower() in FORWARDED}

    async def open(self, call: Call) -> web.StreamResponse | Upstreamed:
        request = call.request
        query = request.raw_path.partition("?")[2]
        if call.rest == "/websocket" and request.method == "GET":
            return await self._websocket(call, query)
        if call.rest == "/api/broadcast" and request.method == "POST":
            if request.content_length is not None and request.content_length > MAX_BODY:
                return web.json_response({"message": "Payload too large"}, status=413)
            body = await request.content.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                return web.json_response({"message": "Payload too large"}, status=413)
            url = URL(f"{self.base}/v1/{call.ref}/api/broadcast" + (f"?{query}" if query else ""), encoded=True)
            try:
                upstream = await self.session().post(url, headers=self._headers(call), data=body)
            except aiohttp.ClientError:
                return web.json_response({"message": "the realtime service is unavailable; try again shortly"},
                                         status=502)
            return Upstreamed(status=upstream.status, reason=upstream.reason, headers=upstream.headers,
                              body=upstream.content.iter_any(), release=upstream.release)
        return web.json_response({"message": "not found"}, status=404)

    async def _websocket(self, call: Call, query: str) -> web.StreamResponse:
        request = call.request
        url = URL(f"{self.base}/v1/{call.ref}/websocket" + (f"?{query}" if query else ""), encoded=True)
        try:
            upstream = await self.session().ws_connect(url, headers=self._headers(call), autoping=True,
                                                       max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
        except aiohttp.WSServerHandshakeError as exc:
            return web.json_response({"message": exc.message or "refused"}, status=exc.status)
        except aiohttp.ClientError:
            return web.json_response({"message": "the realtime service is unavailable; try again shortly"},
                                     status=502)
        client = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await client.prepare(request)

        async def pump(src: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
                       dst: aiohttp.ClientWebSocketResponse | web.WebSocketResponse) -> None:
            async for msg in src:
                if msg.type == WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break

        tasks = [asyncio.create_task(pump(client, upstream)), asyncio.create_task(pump(upstream, client))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            code = upstream.close_code or 1000
            with contextlib.suppress(Exception):
                await upstream.close()
            with contextlib.suppress(Exception):
                await client.close(code=code if code in (1000, 1001, 1011, 1013) else 1000)
        return client

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
