"""The gateway during a PostgreSQL outage, against real processes: orgs and the gateway reach
PostgreSQL through a TCP proxy the test cuts (never the shared server itself). While it is
cut, a signed-in request answers 503 with a reason and Retry-After, within seconds, not a
500 or a hang; once it is back the gateway recovers by itself."""

from __future__ import annotations

import time
import uuid
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
