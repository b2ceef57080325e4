"""Benchmark: how long a committed realtime settings change takes to reach the realtime
server's ConfigFeed (services/realtime/server/config_feed.py), against a baseline in the
same run: a bare `NOTIFY` on the same cluster heard by a listening connection.

On a throwaway database: the realtime application on PostgreSQL, one ConfigFeed listening,
`--changes` PATCHes of one project's `max_concurrent_users` (each waits for the feed's
callback before the next), each measured from the application call's start (its checks and
its save included) to the feed's callback with the new value: what an API caller's change
takes to reach the server, less the HTTP and RPC hops in front of it.

Run: .venv/bin/python bench/realtime_config.py [--changes 200]
Last line: RESULT config_to_feed_ms_p50=... config_to_feed_ms_p99=... config_to_feed_ms_max=... save_ms_p50=...
(the application call alone) notify_ms_p50=... notify_ms_p99=... (the baseline)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from services.realtime.bootstrap import build  # noqa: E402
from services.realtime.server.config_feed import ConfigFeed  # noqa: E402
from services.shared.db import drop_database, ensure_database  # noqa: E402
from services.shared.settings import load_settings  # noqa: E402


class Ports:
    def __init__(self, owner: str, ref: str):
        self.owner, self.ref = owner, ref

    def get_project(self, user_id: str, ref: str) -> dict[str, Any]:
        return {"ref": ref, "organization_slug": "bench", "status": "ACTIVE_HEALTHY"}

    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
        return {"slug": slug, "role": "owner"}

    def get_entitlements(self, org_slug: str) -> dict[str, Any]:
        return {"plan": "enterprise", "realtime": {}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=200)
    args = ap.parse_args(argv)
    settings = load_settings().with_overrides(db_name=f"sp_bench_rtcfg_{os.getpid()}_{int(time.time())}")
    ensure_database(settings)
    app = build(settings)
    feed = ConfigFeed(settings.db_conninfo, poll_s=0.5)
    try:
        ref = "benchrealtimeconfigx"
        ports = Ports(str(uuid.uuid4()), ref)
        feed.start()
        deadline = time.monotonic() + 10
        while not feed.connected.wait(0.05):
            if time.monotonic() > deadline:
                raise SystemExit("the feed never connected")
        feed.get(ref)
        heard = threading.Event()
        want = {"n": 0}
        feed.on_change(lambda r, cfg: heard.set() if cfg.max_concurrent_users == want["n"] else None)

        change_ms, save_ms = [], []
        for i in range(args.changes):
            want["n"] = 1000 + i
            heard.clear()
            t = time.perf_counter()
            app.update_realtime_config(ports.owner, ref, {"max_concurrent_users": want["n"]}, ports, ports, ports)
            save_ms.append((time.perf_counter() - t) * 1000)
            if not heard.wait(10):
                raise SystemExit(f"change {i} never reached the feed")
            change_ms.append((time.perf_counter() - t) * 1000)

        # Baseline: a bare NOTIFY heard by a listening connection, same cluster, same run.
        notify_ms = []
        with psycopg.connect(settings.db_conninfo, autocommit=True) as listener, \
                psycopg.connect(settings.db_conninfo, autocommit=True) as sender:
            listener.execute("LISTEN bench_baseline")
            for i in range(args.changes):
                t = time.perf_counter()
                sender.execute("SELECT pg_notify('bench_baseline', %s)", (str(i),))
                next(iter(listener.notifies(timeout=10, stop_after=1)))
                notify_ms.append((time.perf_counter() - t) * 1000)

        print(f"{args.changes} changes; feed reconnects: {feed.reconnects}")
        print(f"RESULT config_to_feed_ms_p50={statistics.median(change_ms):.2f} "
              f"config_to_feed_ms_p99={pct(change_ms, 0.99):.2f} config_to_feed_ms_max={max(change_ms):.2f} "
              f"save_ms_p50={statistics.median(save_ms):.2f} notify_ms_p50={statistics.median(notify_ms):.2f} notify_ms_p99={pct(notify_ms, 0.99):.2f}")
        return 0
    finally:
        feed.stop()
        app.close()
        drop_database(settings)


if __name__ == "__main__":
    sys.exit(main())
