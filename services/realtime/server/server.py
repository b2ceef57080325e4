"""The realtime server: Supabase Realtime's Phoenix channels, as `@supabase/realtime-js` 2.x
speaks them, for every project, in one asyncio process on loopback behind the project edge.

    GET  /v1/<ref>/websocket?apikey=…&vsn=1.0.0|2.0.0   the socket (edge: <project URL>/realtime/v1/websocket)
    POST /v1/<ref>/api/broadcast                        REST broadcast (edge: <project URL>/realtime/v1/api/broadcast)
    GET  /health
    GET  /internal/stats       operator stats per project; Bearer internal_token(settings, "realtime")

Trusts nothing it is sent: the project comes from the path and every key and token is
verified against that project's own JWT secret here (the edge checked the apikey too, but
tenant code may reach loopback directly). What a channel does (docs/realtime.md):
broadcast (`self`, `ack`), presence (Phoenix presence state and diffs), private channels
authorized by the project's RLS policies on realtime.messages, Postgres changes through a
ChangesProvider (changes.py), `access_token` refresh and expiry, and each project's limits
(RealtimeConfig) with Supabase's error texts. Every fan-out goes through the per-project fair
queue (fair.py), so one project's flood does not starve another's delivery.

Imports aiohttp, the standard library, shared settings and tenants, and its own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from aiohttp import WSMsgType, web

from services.realtime.config import ConfigSource, RealtimeConfig
from services.shared.settings import Settings
from services.shared.tenants import Tenant, Tenants, verify_jwt

from .authz import ALL, Authorizer, Policies, PolicyError, TokenRefused, confirm_token
from .changes import ChangesProvider, ChangesRefused, Subscriber
from .fair import FairQueue, FanOut
from .protocol import VSN1, VSNS, BadFrame, Frame, decode, encode, payload_size

log = logging.getLogger("realtime.server")

REF = re.compile(r"^[a-z]{20}$")
PREFIX = "realtime:"


class Usage(Protocol):
    """Where the server counts what it meters (usage.py writes it to the usage pipeline)."""

    def messages(self, ref: str, count: int) -> None: ...

    def connections(self, ref: str, current: int) -> None: ...

    def close(self) -> None: ...


class NoUsage:
    def messages(self, ref: str, count: int) -> None:
        return None

    def connections(self, ref: str, current: int) -> None:
        return None

    def close(self) -> None:
        return None


class Window:
    """A count per one-second window (Supabase's per-second limits)."""

    __slots__ = ("second", "count")

    def __init__(self) -> None:
        self.second = 0
        self.count = 0

    def hit(self, n: int, limit: int) -> bool:
        now = int(time.monotonic())
        if now != self.second:
            self.second, self.count = now, 0
        if self.count + n > limit:
            return False
        self.count += n
        return True


@dataclass(eq=False)
class Channel:
    conn: "Conn"
    topic: str
    name: str
    join_ref: str | None
    private: bool
    self_broadcast: bool
    ack: bool
    presence_key: str
    presence_enabled: bool
    token: str
    claims: dict[str, Any]
    policies: Policies = ALL
    presence_ref: str | None = None
    presence_synced: bool = False
    subscriber: Subscriber | None = None
    expiry: asyncio.TimerHandle | None = None
    joined_at: float = field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, bool]:
        return (self.name, self.private)

    @property
    def role(self) -> str:
        return str(self.claims.get("role") or "")

    def deliver(self, frame_for: Callable[[str], Any]) -> bool:
        data = frame_for(self.conn.vsn)
        return data is not None and self.conn.enqueue(data)


class Conn:
    def __init__(self, server: "RealtimeServer", hub: "Hub", ws: web.WebSocketResponse, vsn: str, apikey: str,
                 apikey_claims: dict[str, Any], queue_size: int):
        self.id = uuid.uuid4().hex
        self.server = server
        self.hub = hub
        self.ws = ws
        self.vsn = vsn
        self.apikey = apikey
        self.apikey_claims = apikey_claims
        self.channels: dict[str, Channel] = {}
        self.out: asyncio.Queue[str | bytes | None] = asyncio.Queue(queue_size)
        self.last_seen = time.monotonic()
        self.closed = False
        self.connected_at = time.time()

    def enqueue(self, data: str | bytes) -> bool:
        if self.closed:
            return False
        try:
            self.out.put_nowait(data)
        except asyncio.QueueFull:
            log.warning("a client of %s fell %d frames behind: disconnected", self.hub.ref, self.out.maxsize)
            self.closed = True
            asyncio.get_running_loop().create_task(self.ws.close(code=1013, message=b"too slow"))
            return False
        return True

    def push(self, topic: str, event: str, payload: Any, ref: str | None = None, join_ref: str | None = None) -> None:
        """One frame to this socket alone (replies, system messages, presence state); counted."""
        data = encode(Frame(join_ref, ref, topic, event, payload), self.vsn)
        if data is not None and self.enqueue(data):
            self.hub.sent(1)

    def reply(self, frame: Frame, status: str, response: dict[str, Any]) -> None:
        self.push(frame.topic, "phx_reply", {"status": status, "response": response}, ref=frame.ref,
                  join_ref=frame.join_ref)

    async def writer(self) -> None:
        try:
            while True:
                data = await self.out.get()
                if data is None:
                    return
                if isinstance(data, bytes):
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(data)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return


class Hub:
    """Everything the server holds for one project."""

    def __init__(self, server: "RealtimeServer", ref: str, tenant: Tenant):
        self.server = server
        self.ref = ref
        self.tenant = tenant
        self.conns: set[Conn] = set()
        self.users: set[Conn] = set()  # sockets with at least one joined channel
        self.topics: dict[tuple[str, bool], dict[Channel, None]] = {}
        # presence per topic: key -> phx_ref -> meta (meta includes its phx_ref)
        self.presence: dict[tuple[str, bool], dict[str, dict[str, dict[str, Any]]]] = {}
        self.joins, self.events, self.bytes, self.presence_events = Window(), Window(), Window(), Window()
        self.peak = 0

    def sent(self, n: int) -> None:
        self.server.usage.messages(self.ref, n)

    def received(self, n: int = 1) -> None:
        self.server.usage.messages(self.ref, n)

    def connected(self) -> None:
        current = len(self.conns)
        self.peak = max(self.peak, current)
        self.server.usage.connections(self.ref, current)

    def stats(self) -> dict[str, Any]:
        presence = {f"{name}{' (private)' if private else ''}": sum(len(v) for v in keys.values())
                    for (name, private), keys in self.presence.items() if keys}
        return {
            "channels": len(self.topics),
            "joined_channels": sum(len(v) for v in self.topics.values()),
            "clients": len(self.conns),
            "users": len(self.users),
            "peak_clients": self.peak,
            "presence": presence,
            "subscriptions": sum(1 for chans in self.topics.values() for c in chans if c.subscriber is not None),
            "topics": sorted(f"{n}{' (private)' if p else ''}" for (n, p) in self.topics),
            "pending_fanouts": self.server.queue.pending(self.ref),
        }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"reason": f"{code}: {message}"}


class RealtimeServer:
    def __init__(self, settings: Settings, tenants: Tenants, config: ConfigSource, changes: ChangesProvider,
                 usage: Usage | None = None, authorizer: Authorizer | None = None,
                 internal_token: str | None = None):
        self.settings = settings
        self.tenants = tenants
        self.config = config
        self.changes = changes
        self.usage: Usage = usage or NoUsage()
        self.authorizer = authorizer or Authorizer()
        self.internal_token = internal_token
        self.hubs: dict[str, Hub] = {}
        self.queue = FairQueue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        config.on_change(self._config_changed_threadsafe)
        on_shutdown = getattr(config, "on_shutdown", None)  # the live feed: POST .../config/realtime/shutdown
        if on_shutdown is not None:
            on_shutdown(self._shutdown_threadsafe)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks.append(asyncio.create_task(self.queue.run(), name="fair-queue"))
        self._tasks.append(asyncio.create_task(self._watchdog(), name="watchdog"))

    async def stop(self) -> None:
        for hub in list(self.hubs.values()):
            for conn in list(hub.conns):
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=1001, message=b"server shutting down")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.changes.close()
        stop = getattr(self.config, "stop", None)
        if stop is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(stop)
        await asyncio.to_thread(self.usage.close)

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/internal/stats", self.stats_route)
        app.router.add_get("/v1/{ref}/websocket", self.websocket)
        app.router.add_post("/v1/{ref}/api/broadcast", self.rest_broadcast)

        async def on_startup(_: web.Application) -> None:
            await self.start()

        async def on_cleanup(_: web.Application) -> None:
            await self.stop()

        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        return app

    # -- operator stats -----------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, Any]]:
        """Per project: channels (topics with a joined channel), joined channels, connected
        clients, users (clients with a channel, what max_concurrent_users counts), peak
        clients since start, presence entries per topic, Postgres changes subscriptions."""
        return {ref: hub.stats() for ref, hub in sorted(self.hubs.items()) if hub.conns or hub.topics}

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"service": "realtime-server", "status": "ok"})

    async def stats_route(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if not self.internal_token or not hmac.compare_digest(given.encode(), f"Bearer {self.internal_token}".encode()):
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response({"projects": self.stats()})

    # -- tenants ------------------------------------------------------------------------------
    async def _tenant(self, ref: str, key: str | None) -> tuple[Tenant | None, dict[str, Any] | None, web.Response | None]:
        if not REF.match(ref):
            return None, None, web.json_response({"message": "Tenant not found"}, status=404)
        try:
            tenant = await self.tenants.get(ref)
        except Exception as exc:  # noqa: BLE001
            log.warning("tenant lookup for %s failed: %s", ref, exc)
            return None, None, web.json_response({"message": "the project's settings could not be read"}, status=503)
        if tenant is None:
            return None, None, web.json_response({"message": "Tenant not found"}, status=404)
        if not tenant.live:
            return None, None, web.json_response({"message": f"project {ref} is not available ({tenant.status})"},
                                                 status=503)
        if not key:
            return None, None, web.json_response({"message": "No API key found in request"}, status=401)
        claims, _why = verify_jwt(key, tenant)
        if claims is None and self.tenants.may_refresh(ref):
            fresh = await self.tenants.get(ref, refresh=True)
            if fresh is not None and fresh.live:
                tenant = fresh
                claims, _why = verify_jwt(key, tenant)
        if claims is None:
            return None, None, web.json_response({"message": "Invalid API key"}, status=401)
        return tenant, claims, None

    def hub(self, ref: str, tenant: Tenant) -> Hub:
        hub = self.hubs.get(ref)
        if hub is None:
            hub = self.hubs[ref] = Hub(self, ref, tenant)
        else:
            hub.tenant = tenant  # the freshest secret and address
        return hub

    # -- the socket ---------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["ref"]
        vsn = request.query.get("vsn", VSN1)
        if vsn not in VSNS:
            return web.json_response({"message": f"unsupported vsn {vsn}; use 1.0.0 or 2.0.0"}, status=400)
        key = request.query.get("apikey") or request.headers.get("apikey")
        tenant, claims, refused = await self._tenant(ref, key)
        if refused is not None:
            return refused
        assert tenant is not None and claims is not None and key is not None
        rc = await asyncio.to_thread(self.config.get, ref)  # the first read may hit the store
        ws = web.WebSocketResponse(max_msg_size=max(rc.max_payload_size_in_kb * 1024 * 2, 1024 * 1024),
                                   autoping=True)
        await ws.prepare(request)
        hub = self.hub(ref, tenant)
        conn = Conn(self, hub, ws, vsn, key, claims, self.settings.realtime_send_queue)
        hub.conns.add(conn)
        hub.connected()
        writer = asyncio.create_task(conn.writer())
        try:
            async for msg in ws:
                conn.last_seen = time.monotonic()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    try:
                        frame = decode(msg.data, vsn)
                    except BadFrame as exc:
                        log.info("bad frame from a client of %s: %s", ref, exc)
                        continue
                    await self.handle(conn, frame)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            conn.closed = True
            for channel in list(conn.channels.values()):
                await self.leave(channel)
            hub.conns.discard(conn)
            hub.users.discard(conn)
            with contextlib.suppress(asyncio.QueueFull):
                conn.out.put_nowait(None)
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
            self._forget(hub)
        return ws

    def _forget(self, hub: Hub) -> None:
        if not hub.conns and not hub.topics and self.hubs.get(hub.ref) is hub:
            del self.hubs[hub.ref]
            forget = getattr(self.config, "forget", None)
            if forget is not None:
                forget(hub.ref)

    async def handle(self, conn: Conn, frame: Frame) -> None:
        if frame.topic == "phoenix":
            if frame.event == "heartbeat":
                conn.reply(frame, "ok", {})
            return
        if frame.event == "phx_join":
            await self.join(conn, frame)
            return
        channel = conn.channels.get(frame.topic)
        if channel is None:
            conn.reply(frame, "error", {"reason": "unmatched topic"})
            return
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        if frame.event == "phx_leave":
            await self.leave(channel)
            conn.reply(frame, "ok", {})
        elif frame.event == "broadcast":
            await self.client_broadcast(channel, frame, payload)
        elif frame.event == "presence":
            await self.presence(channel, frame, payload)
        elif frame.event == "access_token":
            await self.access_token(channel, payload)
        else:
            conn.hub.received()

    # -- join and leave -----------------------------------------------------------------------
    async def join(self, conn: Conn, frame: Frame) -> None:
        hub = conn.hub
        hub.received()
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
        if not frame.topic.startswith(PREFIX):
            conn.reply(frame, "error", {"reason": "unmatched topic"})
            return
        name = frame.topic[len(PREFIX):]
        if not name:
            conn.reply(frame, "error", _error("TopicNameRequired", "You must provide a topic name"))
            return
        old = conn.channels.get(frame.topic)
        if old is not None:  # a second join of the same topic replaces the first (as Phoenix does)
            await self.leave(old)
        private = config.get("private") is True
        broadcast = config.get("broadcast") if isinstance(config.get("broadcast"), dict) else {}
        presence = config.get("presence") if isinstance(config.get("presence"), dict) else {}
        rc = self.config.get(hub.ref)
        refused = self._join_limits(conn, rc, private)
        if refused is not None:
            conn.reply(frame, "error", refused)
            return
        token = payload.get("access_token") or payload.get("user_token") or conn.apikey
        if not isinstance(token, str) or token.startswith("sb_"):
            token = conn.apikey
        try:
            claims = confirm_token(token, hub.tenant)
        except TokenRefused as exc:
            conn.reply(frame, "error", _error(exc.code, exc.message))
            return
        policies = ALL
        if private:
            try:
                policies = await self.authorizer.policies(hub.tenant, name, str(claims.get("role")), claims)
            except PolicyError as exc:
                log.warning("private channel check for %s failed: %s", hub.ref, exc)
                conn.reply(frame, "error", _error("UnableToSetPolicies",
                                                  "Realtime was unable to connect to the project database"))
                return
            if not policies.can_read:
                conn.reply(frame, "error", _error(
                    "Unauthorized", f"You do not have permissions to read from this Channel topic: {name}"))
                return
        if conn.closed:
            return
        key = presence.get("key")
        channel = Channel(conn=conn, topic=frame.topic, name=name, join_ref=frame.join_ref or frame.ref,
                          private=private, self_broadcast=broadcast.get("self") is True,
                          ack=broadcast.get("ack") is True,
                          presence_key=key if isinstance(key, str) and key else str(uuid.uuid4()),
                          presence_enabled=presence.get("enabled") is True or rc.presence_enabled,
                          token=token, claims=claims, policies=policies)
        entries: list[dict[str, Any]] = []
        changes = config.get("postgres_changes")
        if isinstance(changes, list) and changes:
            sub = Subscriber(ref=hub.ref, tenant=hub.tenant, topic=frame.topic,
                             postgres_changes=[c for c in changes if isinstance(c, dict)],
                             role=channel.role, claims=claims, _push=self._changes_push(channel))
            try:
                entries = await self.changes.subscribe(sub)
            except ChangesRefused as exc:
                conn.reply(frame, "error", {"reason": str(exc)})
                return
            sub.ids = [int(e["id"]) for e in entries if "id" in e]
            channel.subscriber = sub
        if conn.closed:
            if channel.subscriber is not None:
                await self.changes.unsubscribe(channel.subscriber)
            return
        conn.channels[frame.topic] = channel
        hub.topics.setdefault(channel.key, {})[channel] = None
        hub.users.add(conn)
        self._arm_expiry(channel)
        conn.reply(frame, "ok", {"postgres_changes": entries})
        if channel.subscriber is not None:
            conn.push(frame.topic, "system", {"extension": "postgres_changes", "status": "ok",
                                              "message": "Subscribed to PostgreSQL", "channel": name})
        if channel.presence_enabled:
            self._sync_presence(channel)

    def _join_limits(self, conn: Conn, rc: RealtimeConfig, private: bool) -> dict[str, Any] | None:
        hub = conn.hub
        if rc.suspend:
            return _error("RealtimeDisabledForTenant", "Realtime disabled for this tenant")
        if rc.private_only and not private:
            return _error("PrivateOnly", "This project only allows private channels")
        if conn not in hub.users and len(hub.users) >= rc.max_concurrent_users:
            return _error("ConnectionRateLimitReached", "Too many connected users")
        if not hub.joins.hit(1, rc.max_joins_per_second):
            return {"reason": "ClientJoinRateLimitReached: Too many joins per second"}
        if len(conn.channels) >= rc.max_channels_per_client:
            return {"reason": "ChannelRateLimitReached: Too many channels"}
        return None

    async def leave(self, channel: Channel) -> None:
        conn, hub = channel.conn, channel.conn.hub
        if conn.channels.get(channel.topic) is channel:
            del conn.channels[channel.topic]
        members = hub.topics.get(channel.key)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del hub.topics[channel.key]
        if not conn.channels:
            hub.users.discard(conn)
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        if channel.presence_ref is not None:
            self._untrack(channel)
        if channel.subscriber is not None:
            sub, channel.subscriber = channel.subscriber, None
            try:
                await self.changes.unsubscribe(sub)
            except Exception:  # noqa: BLE001
                log.exception("unsubscribing postgres changes failed")
        self._forget(hub)

    async def shutdown(self, channel: Channel, message: str) -> None:
        """Close one channel with a `system` message saying why (Supabase's shutdown_response)."""
        conn = channel.conn
        conn.push(channel.topic, "system", {"extension": "system", "status": "error", "message": message,
                                            "channel": channel.name})
        await self.leave(channel)
        conn.push(channel.topic, "phx_close", {}, ref=channel.join_ref, join_ref=channel.join_ref)

    # -- tokens -------------------------------------------------------------------------------
    def _arm_expiry(self, channel: Channel) -> None:
        if channel.expiry is not None:
            channel.expiry.cancel()
        exp = float(channel.claims.get("exp") or 0)
        delay = max(exp - time.time(), 0) + 0.05
        loop = asyncio.get_running_loop()
        channel.expiry = loop.call_later(min(delay, 3600.0), lambda: loop.create_task(self._check_expiry(channel)))

    async def _check_expiry(self, channel: Channel) -> None:
        if channel.conn.channels.get(channel.topic) is not channel:
            return
        left = int(float(channel.claims.get("exp") or 0) - time.time())
        if left > 0:
            self._arm_expiry(channel)  # capped timer (an hour), or a refresh moved exp
            return
        await self.shutdown(channel, f"Token has expired {-left} seconds ago")

    async def access_token(self, channel: Channel, payload: dict[str, Any]) -> None:
        channel.conn.hub.received()
        token = payload.get("access_token")
        if not isinstance(token, str) or not token or token.startswith("sb_") or token == channel.token:
            return
        hub = channel.conn.hub
        try:
            claims = confirm_token(token, hub.tenant)
        except TokenRefused as exc:
            await self.shutdown(channel, exc.message)
            return
        if channel.private:
            try:
                policies = await self.authorizer.policies(hub.tenant, channel.name, str(claims.get("role")), claims)
            except PolicyError:
                await self.shutdown(channel, "Realtime was unable to connect to the project database")
                return
            if (channel.policies.broadcast_read and not policies.broadcast_read) or \
                    (channel.policies.presence_read and not policies.presence_read):
                await self.shutdown(channel, f"You no longer have permission to read from this Channel topic: "
                                             f"{channel.name}")
                return
            channel.policies = policies
        channel.token, channel.claims = token, claims
        if channel.subscriber is not None:
            channel.subscriber.claims = claims
            channel.subscriber.role = channel.role
        self._arm_expiry(channel)

    # -- broadcast ----------------------------------------------------------------------------
    async def client_broadcast(self, channel: Channel, frame: Frame, payload: dict[str, Any]) -> None:
        hub = channel.conn.hub
        hub.received()
        rc = self.config.get(hub.ref)
        event = payload.get("event")
        if not isinstance(event, str):
            return
        size = payload_size(payload.get("payload"))
        if size > rc.max_payload_size_in_kb * 1024:
            if channel.ack and frame.ref:
                channel.conn.reply(frame, "error", {"reason": "Payload too large"})
            return
        if not hub.events.hit(1, rc.max_events_per_second):
            await self.shutdown(channel, "Too many messages per second")
            return
        if not hub.bytes.hit(size, rc.max_bytes_per_second):
            await self.shutdown(channel, "Too many bytes per second")
            return
        if channel.private and not channel.policies.broadcast_write:
            return  # as Supabase: an unauthorized broadcast is dropped
        body = {"type": "broadcast", "event": event, "payload": payload.get("payload", {})}
        self.fan_out(hub, channel.key, channel.topic, body, exclude=None if channel.self_broadcast else channel)
        if channel.ack and frame.ref:
            channel.conn.reply(frame, "ok", {})

    def fan_out(self, hub: Hub, key: tuple[str, bool], topic: str, body: dict[str, Any], *,
                exclude: Channel | None = None, event: str = "broadcast",
                want: Callable[[Channel], bool] | None = None) -> int:
        members = hub.topics.get(key)
        if not members:
            return 0
        targets = [c for c in members if c is not exclude and (want is None or want(c))]
        if event == "broadcast" and key[1]:
            targets = [c for c in targets if c.policies.broadcast_read]
        if not targets:
            return 0
        frame = Frame(None, None, topic, event, body)
        self.queue.put(hub.ref, FanOut(targets, lambda vsn: encode(frame, vsn), on_sent=hub.sent))
        return len(targets)

    async def rest_broadcast(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        key = request.headers.get("apikey") or request.query.get("apikey")
        tenant, apikey_claims, refused = await self._tenant(ref, key)
        if refused is not None:
            return refused
        assert tenant is not None and apikey_claims is not None
        rc = await asyncio.to_thread(self.config.get, ref)
        if rc.suspend:
            return web.json_response({"message": "Realtime disabled for this tenant"}, status=403)
        bearer = request.headers.get("Authorization", "")
        token = bearer[7:].strip() if bearer.lower().startswith("bearer ") else key
        try:
            claims = confirm_token(token, tenant)
        except TokenRefused as exc:
            return web.json_response({"message": exc.message}, status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "the body must be JSON"}, status=400)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return web.json_response({"message": "`messages` must be a non-empty list of "
                                                 "{topic, event, payload, private}"}, status=400)
        checked = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("topic"), str) or not m["topic"] \
                    or not isinstance(m.get("event"), str):
                return web.json_response({"message": f"messages[{i}] needs a topic and an event (strings)"},
                                         status=400)
            if payload_size(m.get("payload", {})) > rc.max_payload_size_in_kb * 1024:
                return web.json_response({"message": f"messages[{i}]: Payload too large"}, status=413)
            checked.append(m)
        hub = self.hub(ref, tenant)
        if not hub.events.hit(len(checked), rc.max_events_per_second):
            self._forget(hub)
            return web.json_response({"message": "Too many messages per second"}, status=429)
        sent = 0
        for m in checked:
            name = m["topic"][len(PREFIX):] if m["topic"].startswith(PREFIX) else m["topic"]
            private = m.get("private") is True
            if private and claims.get("role") != "service_role":
                try:
                    policies = await self.authorizer.policies(tenant, name, str(claims.get("role")), claims)
                except PolicyError:
                    return web.json_response({"message": "Realtime was unable to connect to the project database"},
                                             status=503)
                if not policies.broadcast_write:
                    continue  # as Supabase: dropped, the others still go
            hub.received()
            body_out = {"type": "broadcast", "event": m["event"], "payload": m.get("payload", {})}
            sent += self.fan_out(hub, (name, private), PREFIX + name, body_out)
        self._forget(hub)
        return web.json_response({}, status=202)

    # -- presence -----------------------------------------------------------------------------
    async def presence(self, channel: Channel, frame: Frame, payload: dict[str, Any]) -> None:
        hub = channel.conn.hub
        hub.received()
        rc = self.config.get(hub.ref)
        if channel.private and not channel.policies.presence_write:
            channel.conn.reply(frame, "error", {"reason": "Unauthorized: You do not have permissions to track "
                                                          f"presence on this Channel topic: {channel.name}"})
            return
        if not hub.presence_events.hit(1, rc.max_presence_events_per_second):
            await self.shutdown(channel, "Too many presence messages per second")
            return
        event = payload.get("event")
        if event == "track":
            meta = payload.get("payload", {})
            if not isinstance(meta, dict):
                channel.conn.reply(frame, "error", {"reason": "Presence track payload must be a map"})
                return
            if payload_size(meta) > rc.max_payload_size_in_kb * 1024:
                await self.shutdown(channel, "Track message size exceeded")
                return
            if not channel.presence_enabled or not channel.presence_synced:
                channel.presence_enabled = True
                self._sync_presence(channel)
            self._track(channel, meta)
        elif event == "untrack":
            if channel.presence_ref is not None:
                self._untrack(channel)
        else:
            channel.conn.reply(frame, "error", {"reason": "unknown presence event"})
            return
        channel.conn.reply(frame, "ok", {})

    def _track(self, channel: Channel, meta: dict[str, Any]) -> None:
        hub = channel.conn.hub
        entries = hub.presence.setdefault(channel.key, {}).setdefault(channel.presence_key, {})
        new_ref = uuid.uuid4().hex[:20]
        new_meta = {**meta, "phx_ref": new_ref}
        leaves: dict[str, Any] = {}
        if channel.presence_ref is not None and channel.presence_ref in entries:
            old = entries.pop(channel.presence_ref)
            new_meta["phx_ref_prev"] = channel.presence_ref
            leaves = {channel.presence_key: {"metas": [old]}}
        entries[new_ref] = new_meta
        channel.presence_ref = new_ref
        self._presence_diff(channel, {channel.presence_key: {"metas": [new_meta]}}, leaves)

    def _untrack(self, channel: Channel) -> None:
        hub = channel.conn.hub
        topic = hub.presence.get(channel.key, {})
        entries = topic.get(channel.presence_key, {})
        old = entries.pop(channel.presence_ref or "", None)
        channel.presence_ref = None
        if not entries:
            topic.pop(channel.presence_key, None)
        if not topic:
            hub.presence.pop(channel.key, None)
        if old is not None:
            self._presence_diff(channel, {}, {channel.presence_key: {"metas": [old]}})

    def _presence_diff(self, channel: Channel, joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        hub = channel.conn.hub
        hub.received(0)
        want: Callable[[Channel], bool] = lambda c: c.presence_enabled and c.presence_synced and (
            not c.private or c.policies.presence_read)
        self.fan_out(hub, channel.key, channel.topic, {"joins": joins, "leaves": leaves}, event="presence_diff",
                     want=want)

    def _sync_presence(self, channel: Channel) -> None:
        if channel.private and not channel.policies.presence_read:
            return
        hub = channel.conn.hub
        state = {key: {"metas": list(entries.values())} for key, entries in hub.presence.get(channel.key, {}).items()
                 if entries}
        channel.conn.push(channel.topic, "presence_state", state)
        channel.presence_synced = True

    # -- postgres changes ---------------------------------------------------------------------
    def _changes_push(self, channel: Channel) -> Callable[[dict[str, Any]], Any]:
        async def push(payload: dict[str, Any]) -> None:
            conn = channel.conn
            if conn.closed or conn.channels.get(channel.topic) is not channel:
                return
            frame = Frame(None, None, channel.topic, "postgres_changes", payload)
            self.queue.put(conn.hub.ref, FanOut([channel], lambda vsn: encode(frame, vsn), on_sent=conn.hub.sent))
        return push

    # -- configuration changes and housekeeping -----------------------------------------------
    def _on_loop(self, make: Callable[[], Any]) -> None:
        """Run a coroutine on the server's loop, whichever thread calls (the config feed's)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(make())
        else:
            asyncio.run_coroutine_threadsafe(make(), loop)

    def _config_changed_threadsafe(self, ref: str, config: RealtimeConfig) -> None:
        self._on_loop(lambda: self._config_changed(ref, config))

    def _shutdown_threadsafe(self, ref: str) -> None:
        self._on_loop(lambda: self._shutdown_project(ref))

    async def _shutdown_project(self, ref: str) -> None:
        """The project's realtime was shut down (Management API): every socket is closed, as
        Supabase's tenant shutdown does; clients reconnect by themselves."""
        hub = self.hubs.get(ref)
        if hub is None:
            return
        for conn in list(hub.conns):
            conn.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                conn.out.put_nowait(None)
            asyncio.get_running_loop().create_task(conn.ws.close(code=1000, message=b"realtime shut down"))

    async def _config_changed(self, ref: str, config: RealtimeConfig) -> None:
        hub = self.hubs.get(ref)
        if hub is None:
            return
        if config.suspend:
            await self.disconnect(hub, "Realtime disabled for this tenant")
        elif config.private_only:
            for conn in list(hub.conns):
                for channel in [c for c in conn.channels.values() if not c.private]:
                    await self.shutdown(channel, "This project only allows private channels")

    async def disconnect(self, hub: Hub, message: str) -> None:
        """Close every channel (with a system message) and socket of a project."""
        for conn in list(hub.conns):
            for channel in list(conn.channels.values()):
                await self.shutdown(channel, message)
            conn.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                conn.out.put_nowait(None)
            asyncio.get_running_loop().create_task(conn.ws.close(code=1000, message=message.encode()[:120]))

    async def _watchdog(self) -> None:
        """Every few seconds: sockets silent past the heartbeat timeout are closed; projects
        no longer live (paused, deleted) are disconnected."""
        while True:
            await asyncio.sleep(2.0)
            now = time.monotonic()
            for hub in list(self.hubs.values()):
                for conn in list(hub.conns):
                    if now - conn.last_seen > self.settings.realtime_heartbeat_timeout_s:
                        conn.closed = True
                        asyncio.get_running_loop().create_task(conn.ws.close(code=1000, message=b"heartbeat timeout"))
                try:
                    tenant = await self.tenants.get(hub.ref)
                except Exception:  # noqa: BLE001 -- the projects service is away: keep serving
                    continue
                if tenant is None or not tenant.live:
                    await self.disconnect(hub, "Tenant with the given ID does not exist" if tenant is None
                                          else f"project {hub.ref} is not available ({tenant.status})")
                else:
                    hub.tenant = tenant


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
