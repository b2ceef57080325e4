"""The realtime server's live settings (services/realtime/server/config_feed.py) against the
realtime service's real read model on PostgreSQL: first use reads the store, a committed
PATCH reaches the feed's listeners (on the server's event loop), a shutdown is heard once,
and a lost listening connection comes back and catches up with what changed meanwhile.
(The server enforcing them with realtime-js: tests/integration/test_realtime_*.)"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, Iterator

import psycopg
import pytest

from services.realtime.bootstrap import build
from services.realtime.config import DEFAULT, RealtimeConfig
from services.realtime.server.config_feed import ConfigFeed
from services.shared.db import bootstrap, drop_database
from tests.conftest import make_test_settings
from tests.support import wait_for
from tests.unit.test_realtime_config_app import FakeBilling, FakeOrgs, FakeProjects


@pytest.fixture(scope="module")
def pg_settings() -> Iterator[Any]:
    s = make_test_settings("rtf")
    bootstrap(s)
    yield s
    drop_database(s)


@pytest.fixture
def w(pg_settings: Any) -> Iterator[dict[str, Any]]:
    app = build(pg_settings)
    projects = FakeProjects()
    owner = str(uuid.uuid4())
    refs = ["".join(chr(97 + (b % 26)) for b in uuid.uuid4().bytes[:20]) for _ in range(2)]
    for ref in refs:
        projects.members[(owner, ref)] = "owner"
    feed = ConfigFeed(pg_settings.db_conninfo, retry_s=0.1, poll_s=0.2)
    ports = (projects, FakeOrgs(projects), FakeBilling())
    yield {"app": app, "ports": ports, "owner": owner, "refs": refs, "feed": feed, "settings": pg_settings}
    feed.stop()
    app.close()


def patch(w: dict[str, Any], ref: str, body: dict[str, Any]) -> None:
    w["app"].update_realtime_config(w["owner"], ref, body, *w["ports"])


def test_first_use_reads_the_store_then_changes_arrive(w: dict[str, Any]) -> None:
    a, b = w["refs"]
    patch(w, a, {"max_concurrent_users": 5})  # before the feed ever heard of it
    feed: ConfigFeed = w["feed"].start()
    assert wait_for("feed listening", lambda: feed.connected.is_set())
    assert feed.get(a).max_concurrent_users == 5
    assert feed.get(b) == DEFAULT  # never changed
    seen: list[tuple[str, RealtimeConfig]] = []
    feed.on_change(lambda ref, cfg: seen.append((ref, cfg)))

    patch(w, b, {"max_concurrent_users": 1, "private_only": True})
    wait_for("b's change heard", lambda: [s for s in seen if s[0] == b])
    assert feed.get(b).max_concurrent_users == 1 and feed.get(b).private_only is True
    assert [s[0] for s in seen] == [b]  # a did not change


def test_callbacks_run_on_the_servers_loop_and_shutdown_is_heard_once(w: dict[str, Any]) -> None:
    a, _ = w["refs"]
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        feed = ConfigFeed(w["settings"].db_conninfo, loop=loop, poll_s=0.2)
        w["feed"] = feed
        feed.start()
        assert wait_for("feed listening", lambda: feed.connected.is_set())
        assert feed.get(a) == DEFAULT
        threads: list[str] = []
        shutdowns: list[str] = []
        feed.on_change(lambda ref, cfg: threads.append(threading.current_thread().name))
        feed.on_shutdown(lambda ref: shutdowns.append(ref))
        patch(w, a, {"max_events_per_second": 9})
        wait_for("change heard", lambda: threads)
        assert threads == [runner.name]
        w["app"].shutdown_realtime(w["owner"], a, *w["ports"])
        wait_for("shutdown heard", lambda: shutdowns)
        patch(w, a, {"max_events_per_second": 10})  # a later change is not another shutdown
        wait_for("second change heard", lambda: len(threads) == 2)
        assert shutdowns == [a]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


def test_a_lost_connection_comes_back_and_catches_up(w: dict[str, Any]) -> None:
    a, _ = w["refs"]
    feed: ConfigFeed = w["feed"].start()
    assert wait_for("feed listening", lambda: feed.connected.is_set())
    assert feed.get(a) == DEFAULT
    seen: list[RealtimeConfig] = []
    feed.on_change(lambda ref, cfg: seen.append(cfg))
    # Cut the feed's listening connection (only this test database's backends listening
    # on the channel), change the settings while nobody listens, and let it come back.
    with psycopg.connect(w["settings"].db_conninfo, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN realtime_config%%' AND pid <> pg_backend_pid()").fetchall()
        assert killed
        patch(w, a, {"max_joins_per_second": 3})
    wait_for("reconnected", lambda: feed.reconnects >= 1 and feed.connected.is_set())
    wait_for("missed change applied", lambda: seen and seen[-1].max_joins_per_second == 3)
    assert feed.get(a).max_joins_per_second == 3
