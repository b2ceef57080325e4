"""Benchmark: `history state` on an aggregate with 10,000 events, with and without snapshots.

On a throwaway database: one Project aggregate in the projects store, given `--events`
PostgREST settings changes (saved 500 at a time). Then the state at random past points
(a log position or a time), measured three ways in the same run:
- baseline: replay from version 1 (the store opened without snapshots);
- first query with snapshots: takes the missing snapshots (every 100 versions) once;
- with snapshots: the state-at query as `platformctl history state` runs it.

Run: .venv/bin/python bench/history.py [--events 10000] [--queries 30]
Last line: RESULT history_state_at_ms_p50=... history_state_at_ms_max=... baseline_replay_ms_p50=...
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.projects.application import ProjectsApplication  # noqa: E402
from services.projects.domain import Project  # noqa: E402
from services.shared.db import drop_database, ensure_database, ensure_schema  # noqa: E402
from services.shared.history import History, Point, open_history  # noqa: E402
from services.shared.settings import load_settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=30)
    args = ap.parse_args(argv)
    tag = f"{os.getpid()}_{int(time.time())}"
    settings = load_settings().with_overrides(db_name=f"sp_bench_history_{tag}")
    ensure_database(settings)
    try:
        ensure_schema(settings, "projects")
        app = ProjectsApplication(env=settings.eventstore_env("projects", 1, 0))
        project = Project(ref="benchhistoryref", org_slug="bench", name="bench", region="eu-west-1",
                          db_pass_enc="x", jwt_secret_enc="y", keys_issued_at=0, operation_id="op", meta={})
        started = time.monotonic()
        for i in range(1, args.events):
            project.change_postgrest(changes={"max_rows": i}, meta={"actor": "bench", "correlation_id": str(i)})
            if i % 500 == 0:
                app.save(project)
        app.save(project)
        write_s = time.monotonic() - started
        originator = project.id
        history = History(app)  # the same store without snapshots: the baseline
        head = history.head(originator)
        assert head == args.events, head
        print(f"wrote {head} events in {write_s:.1f}s", flush=True)
        rng = random.Random(17)
        top = app.recorder.max_notification_id() or 0
        points = [Point(position=rng.randint(1, top)) for _ in range(args.queries)]

        def measure(h: History, pts: list[Point]) -> list[float]:
            times = []
            for p in pts:
                t = time.perf_counter()
                version = h.version_at(originator, p)
                state = h.state(originator, version)
                times.append((time.perf_counter() - t) * 1000)
                assert state is not None and (version == 1 or state["postgrest"]["max_rows"] == version - 1)
            return times

        baseline = measure(history, points[:5])
        app.close()
        with open_history("projects", settings) as snap:
            t = time.perf_counter()
            snap.state(originator, head)  # takes the snapshots once
            first_ms = (time.perf_counter() - t) * 1000
            with_snapshots = measure(snap, points)
            # by time too: the binary search over event timestamps
            times = [snap._event(originator, rng.randint(1, head)).timestamp for _ in range(args.queries)]
            by_time = measure(snap, [Point(time=w) for w in times])
        print(f"baseline (replay from version 1): p50 {statistics.median(baseline):.1f} ms over {len(baseline)}")
        print(f"first query with snapshots (takes {head // 100} snapshots): {first_ms:.0f} ms")
        print(f"with snapshots, by position: p50 {statistics.median(with_snapshots):.1f} ms "
              f"max {max(with_snapshots):.1f} ms; by time: p50 {statistics.median(by_time):.1f} ms "
              f"max {max(by_time):.1f} ms")
        print(f"RESULT events={head} history_state_at_ms_p50={statistics.median(with_snapshots):.1f} "
              f"history_state_at_ms_max={max(with_snapshots):.1f} "
              f"history_state_at_by_time_ms_p50={statistics.median(by_time):.1f} "
              f"history_state_at_by_time_ms_max={max(by_time):.1f} "
              f"baseline_replay_ms_p50={statistics.median(baseline):.1f} first_query_with_snapshotting_ms={first_ms:.0f}")
    finally:
        drop_database(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
