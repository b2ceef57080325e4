"""nameko wiring shared by every service process: settings, event store and database
dependencies, and the reliable event handler. Only service entrypoint modules import this.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from nameko.events import SERVICE_POOL, EventHandler
from nameko.extensions import DependencyProvider
from psycopg_pool import ConnectionPool

from . import broker
from .contracts import ContractError, parse_message
from .db import ensure_schema
from .eventstore import open_application
from .settings import Settings, load_settings

log = logging.getLogger("nameko_ext")


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
        self.app = self.factory(load_settings())

    def stop(self) -> None:
        close = getattr(self.app, "close", None)
        if callable(close):
            close()

    def get_dependency(self, worker_ctx: Any) -> Any:
        return self.app


def make_pool(settings: Settings, schema: str, ddl: str = "", max_size: int = 8) -> ConnectionPool:
    ensure_schema(settings, schema, ddl)
    pool = ConnectionPool(settings.db_conninfo, min_size=1, max_size=max_size, open=False,
                          kwargs={"autocommit": True})
    pool.open(wait=True, timeout=10)
    return pool


class ReliableEventHandler(EventHandler):
    """An event handler that never loses a message and never blocks its queue.

    The handler receives the checked envelope. If it raises, the message goes to the
    queue's delay queue (retry with exponential backoff) or, after the last attempt, to
    `<queue>.dlq` with its error; the original is acked only after that publish is
    confirmed. If even that publish fails, the original is requeued. A message that breaks
    its contract is dead-lettered at once. The handler must be idempotent on event_id
    (use `consuming.claim` in the transaction of its effect).
    """

    def __init__(self, source_service: str, event_type: str, **kwargs: Any):
        kwargs.setdefault("handler_type", SERVICE_POOL)
        kwargs["requeue_on_error"] = False
        super().__init__(source_service, event_type, **kwargs)

    def setup(self) -> None:
        super().setup()
        self.settings = load_settings()
        self.policy = broker.FailurePolicy(self.settings.consumer_max_attempts, self.settings.consumer_retry_base_ms)
        self._publisher: broker.ConfirmingPublisher | None = None
        self._lock = threading.Lock()  # green under eventlet: one reroute at a time

    def start(self) -> None:
        super().start()
        conn = broker.connect(self.settings)
        try:
            broker.declare_failure_queues(conn.channel(), self.queue.name)
        finally:
            conn.close()

    def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        super().stop()

    def handle_message(self, body: Any, message: Any) -> None:
        try:
            envelope = parse_message(body if isinstance(body, dict) else json.loads(body))
        except (ContractError, ValueError) as exc:
            self._reroute(message, f"ContractError: {exc}", permanent=True)
            return
        super().handle_message(envelope, message)

    def handle_result(self, message: Any, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> Any:
        if exc_info is not None:
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
