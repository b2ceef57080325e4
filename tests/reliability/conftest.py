"""Reliability fixtures: a throwaway database and vhost per test, the probe's relay and
consumer as real processes that a test can kill -9 and restart, and the probes (effects,
relay position, queue depths, dead letters) the assertions read."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import amqp
import pytest
import requests

from services.shared import broker
from services.shared.db import bootstrap, connect, drop_database
from services.shared.eventstore import open_application
from services.shared.probe import ProbeApplication
from services.shared.rabbitadmin import RabbitAdmin
from services.shared.relay import position_key
from services.shared.runner import ROOT, child_env
from services.shared.settings import Settings
from tests.conftest import ARTIFACTS, make_test_settings
from tests.support import wait_for  # noqa: F401  (re-exported to the reliability tests)

PROBE_QUEUE = "probe.sink"


class Proc:
    """One platform process started from its command line; killable and restartable."""

    def __init__(self, name: str, argv: list[str], settings: Settings, log_dir: Path):
        self.name = name
        self.argv = argv
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.alive, f"{self.name} already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start #{self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=child_env(self.settings), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    def kill9(self) -> None:
        """SIGKILL: no cleanup, no goodbye to the broker or the database."""
        assert self.proc is not None and self.alive, f"{self.name} is not running; cannot kill it"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL if it does not go)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Backbone:
    """The probe pipeline on one throwaway database and vhost:
    ProbeApplication (store) -> relay process -> RabbitMQ -> probe consumer process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        log_dir = ARTIFACTS / "logs" / settings.db_name
        self.relay = Proc("relay", [sys.executable, "-m", "services.shared.relay", "probe"], settings, log_dir)
        self.consumer = Proc("probe_consumer", [sys.executable, "-m", "services.shared.probe_consumer"],
                             settings, log_dir)
        self._app: ProbeApplication | None = None

    # -- processes --------------------------------------------------------------------------
    def start_consumer(self, timeout: float = 30.0) -> None:
        self.consumer.start()
        # The queue must exist (and be bound) before the relay publishes, or messages are
        # unroutable; a consumer on it means the process got that far.
        wait_for("the probe consumer to consume",
                 lambda: self.consumers(PROBE_QUEUE) > 0 or not self.consumer.alive, timeout)
        assert self.consumer.alive, f"probe consumer exited:\n{self.consumer.log()[-3000:]}"

    def start_relay(self) -> None:
        self.relay.start()

    def stop_all(self) -> None:
        for p in (self.relay, self.consumer):
            p.stop()
        if self._app is not None:
            self._app.close()
            self._app = None

    # -- the store --------------------------------------------------------------------------
    @property
    def app(self) -> ProbeApplication:
        if self._app is None:
            self._app = open_application(ProbeApplication, self.settings)
        return self._app

    def write(self, run_id: str, seqs: list[int], fail_seqs: frozenset[int] = frozenset()) -> None:
        self.app.record_batch(run_id, seqs, fail_seqs)

    def last_position(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    def relay_position(self) -> int:
        with connect(self.settings) as db:
            row = db.execute("SELECT position FROM probe.relay_position WHERE relay = %s",
                             (position_key("probe"),)).fetchone()
        return int(row[0]) if row else 0

    def set_relay_position(self, position: int) -> None:
        with connect(self.settings) as db:
            db.execute("UPDATE probe.relay_position SET position = %s WHERE relay = %s",
                       (position, position_key("probe")))

    # -- the consumer's effect --------------------------------------------------------------
    def applied_count(self, run_id: str) -> int:
        with connect(self.settings) as db:
            row = db.execute("SELECT count(*) FROM probe.probe_effects WHERE consumer = %s AND run_id = %s",
                             (PROBE_QUEUE, run_id)).fetchone()
        return int(row[0]) if row else 0

    def effects(self, run_id: str) -> dict[int, int]:
        """seq -> how many times the effect ran."""
        with connect(self.settings) as db:
            rows = db.execute("SELECT seq, applied FROM probe.probe_effects WHERE consumer = %s AND run_id = %s",
                              (PROBE_QUEUE, run_id)).fetchall()
        return {int(s): int(a) for s, a in rows}

    # -- the broker -------------------------------------------------------------------------
    def _declare_passive(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of `queue`, live from the broker (the management API's
        figures lag by seconds)."""
        conn = broker.connect(self.settings)
        try:
            _, ready, consumers = conn.channel().queue_declare(queue, passive=True)
            return int(ready), int(consumers)
        except amqp.exceptions.NotFound:
            return 0, 0
        finally:
            conn.close()

    def ready(self, queue: str) -> int:
        return self._declare_passive(queue)[0]

    def consumers(self, queue: str) -> int:
        return self._declare_passive(queue)[1]

    def publish_raw(self, queue: str, body: bytes, content_type: str = "application/json") -> None:
        """Put a message straight on a queue (default exchange), as a broken producer might."""
        conn = broker.connect(self.settings)
        try:
            ch = conn.channel()
            ch.confirm_select()
            ch.basic_publish(amqp.Message(body, content_type=content_type, delivery_mode=broker.PERSISTENT),
                             exchange="", routing_key=queue)
        finally:
            conn.close()

    def take_all(self, queue: str) -> list[tuple[dict[str, Any], bytes]]:
        """Get (and ack) every message on `queue`: [(headers, body)]."""
        return take_all(self.settings, queue)

    # -- the verdict ------------------------------------------------------------------------
    def settle(self, run_id: str, expected: int, timeout: float = 60.0) -> dict[int, int]:
        """Wait until the pipeline is quiet, then stop the consumer and return the effects.

        Quiet means: `expected` effects exist, the relay has recorded the store's last
        position, and the consumer's queue stays empty. Stopping the consumer gracefully then
        returns any delivery it still held to the queue, so an empty queue afterwards proves
        no duplicate is left unprocessed (it would otherwise be applied after we looked).
        """
        # Stop waiting early once nothing moves any more: a lost message never arrives, and
        # the missing seqs say more than a timeout would.
        deadline = time.monotonic() + timeout
        last_seen, still_since = -1, time.monotonic()
        while (count := self.applied_count(run_id)) < expected:
            if count != last_seen:
                last_seen, still_since = count, time.monotonic()
            elif time.monotonic() - still_since > 3 and self.ready(PROBE_QUEUE) == 0 \
                    and self.relay_position() >= self.last_position():
                break
            assert time.monotonic() < deadline, f"only {count} of {expected} effects after {timeout:.0f}s"
            time.sleep(0.05)
        last = self.last_position()
        wait_for(f"relay to record position {last}", lambda: self.relay_position() >= last, timeout)
        self.relay.stop()
        quiet = 0
        deadline = time.monotonic() + timeout
        while quiet < 4:
            assert time.monotonic() < deadline, f"{PROBE_QUEUE} never drained"
            quiet = quiet + 1 if self.ready(PROBE_QUEUE) == 0 else 0
            time.sleep(0.1)
        self.consumer.stop()
        assert self.ready(PROBE_QUEUE) == 0, "the consumer left deliveries unprocessed"
        return self.effects(run_id)


def broker_answers(settings: Settings) -> bool:
    """AMQP port open and management API up: what a fresh vhost needs."""
    try:
        with socket.create_connection((settings.amqp_host, settings.amqp_port), timeout=1):
            pass
        r = requests.get(settings.rabbitmq_management_url.rstrip("/") + "/api/overview",
                         auth=(settings.amqp_user, settings.amqp_password), timeout=2)
        return r.status_code == 200
    except (OSError, requests.RequestException):
        return False


def take_all(settings: Settings, queue: str) -> list[tuple[dict[str, Any], bytes]]:
    conn = broker.connect(settings)
    out: list[tuple[dict[str, Any], bytes]] = []
    try:
        ch = conn.channel()
        while True:
            msg = ch.basic_get(queue)
            if msg is None:
                return out
            # py-amqp hands the body over decoded when it declares a content encoding.
            body = msg.body.encode() if isinstance(msg.body, str) else bytes(msg.body)
            out.append((dict(msg.properties.get("application_headers") or {}), body))
            ch.basic_ack(msg.delivery_tag)
    finally:
        conn.close()


def assert_exactly_once(effects: dict[int, int], seqs: range | set[int]) -> None:
    """Every seq has its effect exactly once: none missing, none applied twice, no strays."""
    expected = set(seqs)
    missing = sorted(expected - set(effects))
    stray = sorted(set(effects) - expected)
    repeated = {s: n for s, n in effects.items() if n != 1}
    assert not missing, f"{len(missing)} effects missing, e.g. seqs {missing[:10]}"
    assert not repeated, f"{len(repeated)} effects applied more than once, e.g. {dict(list(repeated.items())[:10])}"
    assert not stray, f"unexpected effects for seqs {stray[:10]}"


def new_run() -> str:
    return uuid.uuid4().hex


@contextmanager
def fresh_settings(tag: str, **overrides: Any) -> Iterator[Settings]:
    """A new database and vhost, dropped afterwards."""
    s = make_test_settings(tag).with_overrides(**overrides)
    admin = RabbitAdmin(s)
    # An older checkout's broker-restart test (before it got a private node) may have the
    # machine's RabbitMQ down briefly while it runs concurrently.
    wait_for("RabbitMQ's management API", lambda: broker_answers(s), timeout=90, interval=0.5)
    admin.create_vhost(s.amqp_vhost)
    bootstrap(s)
    try:
        yield s
    finally:
        drop_database(s)
        wait_for("RabbitMQ's management API", lambda: broker_answers(s), timeout=90, interval=0.5)
        admin.delete_vhost(s.amqp_vhost)


@pytest.fixture
def backbone(request: pytest.FixtureRequest) -> Iterator[Backbone]:
    """The probe pipeline on a fresh database and vhost. A test may ask for other consumer
    settings with `@pytest.mark.backbone_settings(consumer_retry_base_ms=...)`."""
    marker = request.node.get_closest_marker("backbone_settings")
    overrides = dict(marker.kwargs) if marker else {}
    with fresh_settings("rel", **overrides) as s:
        b = Backbone(s)
        try:
            yield b
        finally:
            b.stop_all()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backbone_settings(**overrides): settings for the backbone fixture")
