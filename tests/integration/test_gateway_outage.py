"""The gateway during a PostgreSQL outage, against real processes: orgs and the gateway reach
PostgreSQL through a TCP proxy the test cuts (never the shared server itself). While it is
cut, a signed-in request answers 503 with a reason and Retry-After, within seconds, not a
500 or a hang; once it is back the gateway recovers by itself. And a service that hangs (SIGSTOP): the
gateway answers 503 within its RPC timeout, holds no worker for good, and recovers after
SIGCONT."""

from __future__ import annotations

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest
import requests

from services.shared.db import bootstrap, drop_database
from services.shared.rabbitadmin import RabbitAdmin
from services.shared.runner import Platform
from tests.conftest import ARTIFACTS, make_test_settings
from tests.support import TcpProxy, sign_up_confirmed, wait_for


_SETTINGS: list[object] = []


@pytest.fixture(scope="module")
def cut_platform() -> Iterator[tuple[str, TcpProxy]]:
    s = make_test_settings("out")
    admin = RabbitAdmin(s)
    admin.create_vhost(s.amqp_vhost)
    bootstrap(s)
    proxy = TcpProxy(s.db_host, s.db_port)
    through = s.with_overrides(db_host="127.0.0.1", db_port=proxy.port)
    platform = Platform(through, log_dir=ARTIFACTS / "logs" / s.db_name, only=["orgs", "gateway"])
    try:
        platform.start()
        _SETTINGS[:] = [through]  # its mail outbox (sign-up links)
        yield f"http://127.0.0.1:{s.gateway_port}", proxy
    finally:
        proxy.restore()
        platform.stop()
        proxy.close()
        drop_database(s)
        admin.delete_vhost(s.amqp_vhost)


def test_503_with_a_reason_while_postgres_is_down_then_recovers(cut_platform: tuple[str, TcpProxy]) -> None:
    url, proxy = cut_platform
    sess = requests.Session()
    sign_up_confirmed(sess, url, _SETTINGS[0], f"o-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery")
    assert sess.get(url + "/platform/profile", timeout=30).status_code == 200

    proxy.cut()
    t0 = time.monotonic()
    r = sess.get(url + "/platform/profile", timeout=60)
    took = time.monotonic() - t0
    assert r.status_code == 503, (r.status_code, r.text)
    assert "database" in r.json()["message"]
    assert int(r.headers["Retry-After"]) > 0
    assert took < 15, took
    assert requests.get(url + "/health", timeout=10).status_code == 200  # liveness is not the database

    proxy.restore()
    wait_for("the gateway to recover after PostgreSQL is back",
             lambda: sess.get(url + "/platform/profile", timeout=30).status_code == 200, timeout=60, interval=0.5)


@pytest.fixture(scope="module")
def gateway_alone() -> Iterator[str]:
    """The gateway with no service behind it, and a short `rpc_timeout_s`."""
    s = make_test_settings("noreply").with_overrides(rpc_timeout_s=2)
    admin = RabbitAdmin(s)
    admin.create_vhost(s.amqp_vhost)
    bootstrap(s)
    platform = Platform(s, log_dir=ARTIFACTS / "logs" / s.db_name, only=["gateway"])
    try:
        platform.start()
        yield f"http://127.0.0.1:{s.gateway_port}"
    finally:
        platform.stop()
        drop_database(s)
        admin.delete_vhost(s.amqp_vhost)


@pytest.fixture(scope="module")
def stoppable_platform() -> Iterator[tuple[str, Platform]]:
    """orgs, projects and the gateway, with a short RPC timeout, for SIGSTOP / SIGCONT."""
    s = make_test_settings("rpcto").with_overrides(rpc_timeout_s=3.0)
    admin = RabbitAdmin(s)
    admin.create_vhost(s.amqp_vhost)
    bootstrap(s)
    platform = Platform(s, log_dir=ARTIFACTS / "logs" / s.db_name, only=["orgs", "billing", "projects", "gateway"])
    try:
        platform.start()
        yield f"http://127.0.0.1:{s.gateway_port}", platform
    finally:
        for proc in platform.procs.values():  # a stopped process cannot take SIGTERM
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        platform.stop()
        drop_database(s)
        admin.delete_vhost(s.amqp_vhost)


def test_503_when_a_service_never_replies(gateway_alone: str) -> None:
    # orgs is not running: the token's authentication gets no reply. nameko's own proxy
    # would wait for ever; the gateway's waits rpc_timeout_s, then says what is wrong.
    t0 = time.monotonic()
    r = requests.get(gateway_alone + "/v1/projects", headers={"Authorization": "Bearer sbp_" + "0" * 40}, timeout=60)
    took = time.monotonic() - t0
    assert r.status_code == 503, (r.status_code, r.text)
    assert "orgs" in r.json()["message"] and "did not answer" in r.json()["message"], r.text
    assert int(r.headers["Retry-After"]) > 0
    assert 2 <= took < 30, took
    assert requests.get(gateway_alone + "/health", timeout=10).status_code == 200


def test_a_wedged_service_answers_503_within_the_rpc_timeout_then_recovers(
        stoppable_platform: tuple[str, Platform]) -> None:
    url, platform = stoppable_platform
    sess = requests.Session()
    sign_up_confirmed(sess, url, platform.settings, f"w-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery")
    assert sess.get(url + "/v1/projects", timeout=30).status_code == 200

    projects = platform.procs["projects"]
    os.kill(projects.pid, signal.SIGSTOP)
    try:
        # Several at once: each holds a gateway worker only until the timeout, none for good.
        with ThreadPoolExecutor(4) as pool:
            t0 = time.monotonic()
            answers = list(pool.map(lambda _: sess.get(url + "/v1/projects", timeout=60), range(4)))
            took = time.monotonic() - t0
        for r in answers:
            assert r.status_code == 503, (r.status_code, r.text)
            assert "projects" in r.json()["message"] and "did not answer" in r.json()["message"], r.text
            assert int(r.headers["Retry-After"]) > 0
        assert took < 3.0 + 10, took  # the timeout, plus a loaded machine's slack; never a hang
        assert sess.get(url + "/health", timeout=10).status_code == 200
    finally:
        os.kill(projects.pid, signal.SIGCONT)
    wait_for("the gateway to answer again once projects runs",
             lambda: sess.get(url + "/v1/projects", timeout=30).status_code == 200, timeout=60, interval=0.5)
