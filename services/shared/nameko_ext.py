"""nameko wiring shared by every service process: settings, event store and database
dependencies, and the reliable event handler; plus the standalone RPC client for tools.
Only service entrypoint modules and platformctl (for `cluster_rpc`) import this.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from functools import partial
from typing import Any, Callable, Iterable, Iterator

from nameko.events import BROADCAST, SERVICE_POOL, EventHandler
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.extensions import DependencyProvider
from nameko.messaging import QueueConsumer
from nameko.rpc import MethodProxy, ReplyListener, RpcProxy, ServiceProxy, rpc

from . import broker
from .errors import BY_NAME, EXPECTED
from .faults import describe, is_infrastructure_error
from .contracts import ContractError, parse_message
from .db import make_pool  # noqa: F401  (services wire their pools through this module)
from .eventstore import open_application
from .settings import Settings, load_settings

log = logging.getLogger("nameko_ext")

__all__ = ["RemoteError", "RpcTimeout", "UnknownService", "cluster_rpc"]  # re-exported for platformctl


@contextlib.contextmanager
def cluster_rpc(settings: Settings, timeout: float) -> Iterator[Any]:
    """An RPC client to every service, for processes outside nameko's containers (platformctl).
    A call that gets no reply within `timeout` seconds raises RpcTimeout."""
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri}, timeout=timeout) as proxy:
        yield proxy


class RemotePort:
    """Wraps an RPC proxy for application code: calls go through, and a remote service's
    expected errors come back as the same shared error classes (not nameko's RemoteError),
    so applications never see the transport."""

    def __init__(self, proxy: Any):
        self._proxy = proxy

    def __getattr__(self, method: str) -> Callable[..., Any]:
        remote = getattr(self._proxy, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return remote(*args, **kwargs)
            except RemoteError as e:
                cls = BY_NAME.get(e.exc_type or "")
                if cls is None:
                    raise
                raise cls(e.value) from None

        return call


SHUTDOWN_DEADLINE_S = 3.0  # SIGTERM to exit, at most: every platform process ends within 5 s
_deadline_armed = False


def bound_shutdown() -> None:
    """Make SIGTERM end this nameko process within SHUTDOWN_DEADLINE_S: nameko's own handler
    (installed by `nameko run` before the container starts) stops the container gracefully,
    which on a loaded machine can take longer; a native timer armed by the same signal ends
    the process then. Everything the platform keeps is crash-safe (unacked messages are
    redelivered, the stores are transactional). Called from the providers' setup, in the
    main thread, once per process."""
    global _deadline_armed
    import os
    import signal

    if _deadline_armed:
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return  # not under `nameko run` (tests that build containers themselves)
    _deadline_armed = True

    def on_term(signum: int, frame: Any) -> None:
        import eventlet.patcher

        native = eventlet.patcher.original("threading")
        timer = native.Timer(SHUTDOWN_DEADLINE_S, os._exit, args=(0,))
        timer.daemon = True
        timer.start()
        previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: leave the handler as it is
        _deadline_armed = False


class TimedMethodProxy(MethodProxy):
    """A proxy method whose call gives up after `timeout` seconds with RpcTimeout (nameko 2
    would wait for the reply forever: a stopped or wedged service would hold the caller's
    worker for good). The request itself expires on the broker after the same time, so a
    service that comes back does not work through requests nobody waits for any more."""

    def __init__(self, *args: Any, timeout: float, **options: Any):
        self.timeout = timeout
        options.setdefault("expiration", timeout)  # seconds (kombu turns it into a per-message TTL)
        super().__init__(*args, **options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import eventlet

        reply = self._call(*args, **kwargs)
        timer = eventlet.Timeout(self.timeout)
        try:
            return reply.result()
        except eventlet.Timeout as t:
            if t is not timer:
                raise
            # Forget the reply we gave up on (a late one is dropped as unknown).
            events = self.reply_listener._reply_events
            for key, event in list(events.items()):
                if event is reply.reply_event:
                    events.pop(key, None)
            raise RpcTimeout(f"{self.service_name}.{self.method_name} did not answer within "
                             f"{self.timeout:g}s") from None
        finally:
            timer.cancel()


class TimedServiceProxy(ServiceProxy):
    def __init__(self, *args: Any, timeout: float, **options: Any):
        self.timeout = timeout
        super().__init__(*args, **options)

    def __getattr__(self, name: str) -> TimedMethodProxy:
        return TimedMethodProxy(self.worker_ctx, self.service_name, name, self.reply_listener,
                                timeout=self.timeout, **self.options)


class TimedRpcProxy(RpcProxy):
    """nameko's RpcProxy, except that every call is bounded by `rpc_timeout_s` (settings)."""

    def setup(self) -> None:
        super().setup()
        self.timeout = float(load_settings().rpc_timeout_s)

    def get_dependency(self, worker_ctx: Any) -> TimedServiceProxy:
        return TimedServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener, timeout=self.timeout,
                                 **self.options)


class SettingsProvider(DependencyProvider):
    """Loads the process's settings once, at container setup (never at import)."""

    def setup(self) -> None:
        self.settings = load_settings()

    def get_dependency(self, worker_ctx: Any) -> Settings:
        return self.settings


class ApplicationProvider(DependencyProvider):
    """Builds the service's application object once per process with `factory(settings)`."""

    def __init__(self, factory: Callable[[Settings], Any]):
        self.factory = factory
        self.app: Any = None

    def setup(self) -> None:
        bound_shutdown()
        settings = load_settings()
        if settings.profile_dir:
            from . import sampler

            sampler.start(settings.profile_dir, self.container.service_name)
        self.app = self.factory(settings)

    def stop(self) -> None:
        close = getattr(self.app, "close", None)
        if callable(close):
            close()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.app


class ReliableQueueConsumer(QueueConsumer):
    """nameko's queue consumer, except that a body kombu cannot decode (not JSON, or a
    content type it refuses) goes to its handler's `on_decode_error`: kombu's default logs
    it and acks it, which would drop the message silently."""

    def get_consumers(self, consumer_cls: Any, channel: Any) -> Any:
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = provider.on_decode_error
        return consumers


def database_answers(settings: Settings) -> bool:
    import psycopg

    try:
        with psycopg.connect(settings.db_conninfo, connect_timeout=3, application_name="consumer-probe") as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 -- any failure means "not yet"
        return False


class DependencyPause:
    """Messages whose handling failed because a dependency was down wait here, unacked and
    uncounted: the broker sends the handler no more than its prefetch meanwhile, so the
    handler stops consuming. One green thread backs off (0.5 s doubling to 10 s) until the
    database answers, then gives every held message back to its queue, to be handled again."""

    def __init__(self, name: str, settings: Settings, requeue: Callable[[Any], None],
                 answers: Callable[[Settings], bool] = database_answers):
        self.name = name
        self.settings = settings
        self.requeue = requeue
        self.answers = answers
        self.held: list[Any] = []
        self.waiting = False

    def hold(self, container: Any, message: Any, why: str) -> None:
        self.held.append(message)
        if not self.waiting:
            self.waiting = True
            log.warning("%s paused: a dependency is unavailable (%s); messages wait uncounted and go back to "
                        "the queue once the database answers", self.name, why[:300])
            container.spawn_managed_thread(self._wait_then_resume, identifier=f"{self.name}.pause")

    def _wait_then_resume(self) -> None:
        import eventlet

        delay = 0.5
        try:
            while True:
                eventlet.sleep(delay)
                if self.answers(self.settings):
                    break
                delay = min(delay * 2, 10.0)
        finally:
            held, self.held = self.held, []
            self.waiting = False
            log.warning("%s resumes: %d held message(s) back to the queue", self.name, len(held))
            for message in held:
                self.requeue(message)


class ReliableEventHandler(EventHandler):
    """An event handler that never loses a message and never blocks its queue.

    The handler receives the checked envelope. If it raises, the message goes to the
    queue's delay queue (retry with exponential backoff) or, after the last attempt, to
    `<queue>.dlq` with its error; the original is acked only after that publish is
    confirmed. If even that publish fails, the original is requeued. A message that breaks
    its contract is dead-lettered at once. The handler must be idempotent on event_id
    (use `consuming.claim` in the transaction of its effect).
    """

    queue_consumer = ReliableQueueConsumer()

    def __init__(self, source_service: str, event_type: str, *, versions: Iterable[int] = (1,), **kwargs: Any):
        kwargs.setdefault("handler_type", SERVICE_POOL)
        kwargs["requeue_on_error"] = False
        super().__init__(source_service, event_type, **kwargs)
        # The contract versions this handler understands: declared, so contract tests can
        # walk every subscription, and enforced, so a v2 message is parked, not misread.
        self.versions: tuple[int, ...] = tuple(sorted(set(versions)))

    @property
    def accepts(self) -> list[tuple[str, str, int]]:
        """(producer, event_type, schema_version) for each contract this handler consumes."""
        return [(self.source_service, self.event_type, v) for v in self.versions]

    def accept(self, body: Any) -> dict[str, Any]:
        """The checked envelope of a delivered body, or ContractError (ValueError if not JSON)."""
        # kombu hands over any decoded JSON (a list, a number...); only text is still raw.
        # A newer version is adapted down to one this handler declared, where the contract allows.
        envelope = parse_message(json.loads(body) if isinstance(body, (str, bytes, bytearray)) else body,
                                 accept=self.versions)
        got = (envelope["producer"], envelope["event_type"], envelope["schema_version"])
        if got not in self.accepts:
            raise ContractError(f"handler accepts {self.source_service}/{self.event_type} "
                                f"v{', v'.join(map(str, self.versions))}; got {got[0]}/{got[1]} v{got[2]}")
        return envelope

    def setup(self) -> None:
        super().setup()
        # The producer's exchange as every declarer declares it (with its alternate exchange,
        # broker.exchange_arguments): RabbitMQ refuses a declaration whose arguments differ.
        from kombu import Exchange

        ex = self.queue.exchange
        self.queue.exchange = Exchange(ex.name, type=ex.type, durable=ex.durable, delivery_mode=ex.delivery_mode,
                                       auto_delete=ex.auto_delete,
                                       arguments=broker.exchange_arguments(self.source_service))
        self.settings = load_settings()
        self.policy = broker.FailurePolicy(self.settings.consumer_max_attempts, self.settings.consumer_retry_base_ms)
        self._publisher: broker.ConfirmingPublisher | None = None
        self._lock = threading.Lock()  # green under eventlet: one reroute at a time
        self.pause = DependencyPause(self.queue.name, self.settings, self.queue_consumer.requeue_message)

    def declare_topology(self, *, failure_queues: bool) -> None:
        conn = broker.connect(self.settings)
        try:
            channel = conn.channel()
            broker.declare_exchange(channel, self.source_service)  # and its alternate exchange
            if failure_queues:
                broker.declare_failure_queues(channel, self.queue.name)
        finally:
            conn.close()

    def start(self) -> None:
        self.declare_topology(failure_queues=True)
        super().start()

    def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        super().stop()

    def handle_message(self, body: Any, message: Any) -> None:
        try:
            envelope = self.accept(body)
        except (ContractError, ValueError) as exc:
            self._reroute(message, f"ContractError: {exc}", permanent=True)
            return
        super().handle_message(envelope, message)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        # Called in the queue consumer's own thread: park the message from a worker thread.
        error = f"ContractError: message body is not JSON ({message.content_type}): {exc}"
        self.container.spawn_managed_thread(partial(self._reroute, message, error, permanent=True))

    def handle_result(self, message: Any, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> Any:
        if exc_info is not None and is_infrastructure_error(exc_info[1]):
            self.pause.hold(self.container, message, describe(exc_info[1]))
        elif exc_info is not None:
            self._reroute(message, broker.describe_exception(exc_info[1]))
        else:
            self.queue_consumer.ack_message(message)
        return result, exc_info

    def _reroute(self, message: Any, error: str, *, permanent: bool = False) -> None:
        with self._lock:
            self._reroute_locked(message, error, permanent=permanent)

    def _reroute_locked(self, message: Any, error: str, *, permanent: bool = False) -> None:
        try:
            if self._publisher is None:
                self._publisher = broker.ConfirmingPublisher(self.settings)
            where = broker.route_failure(self._publisher, self.queue.name, message.body,
                                         dict(message.headers or {}), error, self.policy, permanent=permanent)
            log.warning("%s: message sent to %s: %s", self.queue.name, where, error[:300])
            self.queue_consumer.ack_message(message)
        except Exception as exc:  # noqa: BLE001 -- cannot park it: give it back to the broker
            log.error("%s: could not reroute failed message (%s); requeueing", self.queue.name, exc)
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None
            self.queue_consumer.requeue_message(message)


reliable_handler = ReliableEventHandler.decorator


class BroadcastEventHandler(ReliableEventHandler):
    """A contract-checked handler that every instance of the service receives (its own
    auto-deleted queue), for effects local to a process, such as dropping cache entries. A
    message whose handler fails is logged and acked: no retry queue per instance (the
    effect is best effort, and what it protects has its own bound, like a cache's TTL)."""

    def __init__(self, source_service: str, event_type: str, *, versions: Iterable[int] = (1,), **kwargs: Any):
        kwargs["handler_type"] = BROADCAST
        kwargs["reliable_delivery"] = False
        super().__init__(source_service, event_type, versions=versions, **kwargs)

    def start(self) -> None:
        self.declare_topology(failure_queues=False)
        super(ReliableEventHandler, self).start()

    def _reroute(self, message: Any, error: str, *, permanent: bool = False) -> None:
        log.warning("%s: dropped a message: %s", self.queue.name, error[:300])
        self.queue_consumer.ack_message(message)


broadcast_handler = BroadcastEventHandler.decorator


def history_rpc() -> Callable[..., dict[str, Any]]:
    """The `history` RPC of a producing service (`history = history_rpc()` in its class):
    time travel over the service's own store, for the admin panel's timelines (platform
    admins only: the gateway and the service both ask orgs). A function, not a mixin: `nameko run` would take an
    imported class with entrypoints for a service of its own."""

    @rpc(expected_exceptions=EXPECTED)
    def history(self: Any, actor_id: str, kind: str, key: str, at: str | None = None) -> dict[str, Any]:
        from . import history as time_travel

        # Platform admins only, asked here too (as every admin RPC does): orgs answers.
        orgs = getattr(self, "orgs", None)
        if orgs is not None:
            RemotePort(orgs).require_admin(actor_id)
        else:  # the orgs service itself
            self.app.require_admin(actor_id)
        return time_travel.view(load_settings(), kind, key, at, producer=self.name)

    return history


# ---- lean RPC: requests and replies on one held channel ---------------------------------------
#
# nameko publishes every RPC request and reply through kombu's producer pool: a new
# `Connection` object per message (parsing the URI), a pool checkout, a persistent message
# and a publisher confirm to wait for. An RPC message lives only as long as its caller
# waits for it, so none of that buys anything: a lost request or reply shows as the
# caller's timeout either way (and a persistent request outliving its caller is work done
# for nobody). `LeanPublisher` holds one connection and channel per process and publishes
# transient messages without confirms: about a quarter of the CPU per message
# (docs/benchmarks.md). Replies of every service go out this way (`Responder.publisher_cls`,
# set below); the gateway's proxies (`LeanRpcProxy`) send requests this way and wait for a
# reply at most `rpc_timeout_s`, where nameko's proxies would wait forever.


class LeanPublisher:
    """One AMQP connection and channel for this process's RPC messages (a lock keeps
    publishes whole; a broken connection is opened again once, then the error is raised)."""

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        self._lock = threading.Lock()  # green under eventlet
        self._conn: Any = None
        self._channel: Any = None

    def publish(self, body: Any, content_type: str, content_encoding: str, exchange: str, routing_key: str,
                **properties: Any) -> None:
        import amqp

        message = amqp.Message(body, content_type=content_type, content_encoding=content_encoding,
                               delivery_mode=1, **properties)
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._channel is None:
                        self._open()
                    self._channel.basic_publish(message, exchange=exchange, routing_key=routing_key)
                    return
                except (OSError, amqp.exceptions.AMQPError, amqp.exceptions.RecoverableConnectionError):
                    self._close()
                    if attempt == 2:
                        raise

    def _open(self) -> None:
        import kombu

        conn = kombu.Connection(self.amqp_uri)
        conn.connect()
        self._conn, self._channel = conn, conn.channel()

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.release()

    def close(self) -> None:
        with self._lock:
            self._close()


_publishers: dict[str, LeanPublisher] = {}
_publishers_lock = threading.Lock()


def lean_publisher(amqp_uri: str) -> LeanPublisher:
    with _publishers_lock:
        if amqp_uri not in _publishers:
            _publishers[amqp_uri] = LeanPublisher(amqp_uri)
        return _publishers[amqp_uri]


def _serialized(payload: Any, serializer: str) -> tuple[str, str, Any]:
    import kombu.serialization

    content_type, content_encoding, body = kombu.serialization.dumps(payload, serializer)
    return content_type, content_encoding, body


class LeanReplyPublisher:
    """What nameko's `Responder` publishes RPC replies with: `LeanPublisher`'s channel."""

    def __init__(self, amqp_uri: str, **options: Any):
        self.publisher = lean_publisher(amqp_uri)

    def publish(self, payload: Any, *, serializer: str, exchange: Any, routing_key: str, correlation_id: Any,
                **ignored: Any) -> None:
        content_type, content_encoding, body = _serialized(payload, serializer)
        self.publisher.publish(body, content_type, content_encoding, exchange.name, routing_key,
                               correlation_id=correlation_id)


def _lean_replies() -> None:
    import nameko.rpc

    nameko.rpc.Responder.publisher_cls = LeanReplyPublisher  # type: ignore[assignment]


_lean_replies()


class LeanRpcProxy(DependencyProvider):
    """nameko's `RpcProxy`, sending requests through `LeanPublisher` and waiting for each
    reply at most `rpc_timeout_s` (then `RpcTimeout`: the gateway answers 503). Replies come
    back on nameko's own reply queue and listener."""

    rpc_reply_listener = ReplyListener()  # nameko's own: one reply queue per process, shared

    def __init__(self, target_service: str):
        self.target_service = target_service

    def setup(self) -> None:
        self.timeout = float(load_settings().rpc_timeout_s)

    def get_dependency(self, worker_ctx: Any) -> Any:
        return _LeanServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener, self.timeout)


class _LeanServiceProxy:
    def __init__(self, worker_ctx: Any, service: str, listener: Any, timeout: float):
        self.worker_ctx, self.service, self.listener, self.timeout = worker_ctx, service, listener, timeout

    def __getattr__(self, method: str) -> Any:
        return partial(_lean_call, self, method)


def _lean_call(proxy: _LeanServiceProxy, method: str, *args: Any, **kwargs: Any) -> Any:
    import uuid

    from nameko.constants import AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, SERIALIZER_CONFIG_KEY
    from nameko.exceptions import deserialize
    from nameko.messaging import HeaderEncoder
    from nameko.rpc import get_rpc_exchange

    config = proxy.worker_ctx.container.config
    correlation_id = str(uuid.uuid4())
    content_type, content_encoding, body = _serialized({"args": args, "kwargs": kwargs},
                                                       config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER))
    headers = HeaderEncoder().get_message_headers(proxy.worker_ctx)
    reply = proxy.listener.get_reply_event(correlation_id)
    try:
        lean_publisher(config[AMQP_URI_CONFIG_KEY]).publish(
            body, content_type, content_encoding, get_rpc_exchange(config).name, f"{proxy.service}.{method}",
            reply_to=proxy.listener.routing_key, correlation_id=correlation_id, application_headers=headers)
        response = reply.wait(proxy.timeout)
    finally:
        proxy.listener._reply_events.pop(correlation_id, None)
    if response is None:
        raise RpcTimeout(f"{proxy.service}.{method} did not answer within {proxy.timeout:g} s")
    if response.get("error"):
        raise deserialize(response["error"])
    return response["result"]
