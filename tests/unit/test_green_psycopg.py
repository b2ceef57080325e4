"""psycopg under eventlet: concurrent queries in one process must overlap, not serialise.

psycopg 3's default wait function blocks eventlet's hub; services.shared.greenpg sets
PSYCOPG_WAIT_FUNC=wait_select (the root conftest does the same for the test process).
"""

from __future__ import annotations

import time

import eventlet
import psycopg

from services.shared.settings import load_settings


def test_two_one_second_queries_in_parallel_take_one_second() -> None:
    conninfo = load_settings({}).conninfo_for("postgres")

    def sleep_query() -> None:
        with psycopg.connect(conninfo) as conn:
            conn.execute("SELECT pg_sleep(1)")

    started = time.monotonic()
    pool = eventlet.GreenPool()
    threads = [pool.spawn(sleep_query) for _ in range(2)]
    for t in threads:
        t.wait()
    elapsed = time.monotonic() - started
    # Serialised, this takes >= 2 s; overlapped, about 1 s plus connection time.
    assert elapsed < 1.7, f"queries serialised under eventlet: {elapsed:.2f}s"


def test_eventlet_patch_is_active() -> None:
    import socket

    assert eventlet.patcher.is_monkey_patched("socket"), "root conftest must monkey-patch first"
    assert socket.socket.__module__.startswith("eventlet")
