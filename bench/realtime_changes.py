"""Realtime Postgres changes: insert-to-callback latency through the whole path (INSERT
committed in the tenant's database -> WAL -> the CDC engine's slot read -> RLS check -> the
realtime server -> the project edge -> @supabase/supabase-js's postgres_changes callback), on a
platform of its own. Baseline from the same run: the plain INSERT round trip.

Each row carries its send time (ms since the epoch); the Node subscriber (tests/js/
realtime_changes.mjs, scenario `latency`) reports arrival minus send per row. Rows are sent
one at a time, a few milliseconds apart (what an app does, not a bulk load).

Also measured: the cost of an empty slot read (the poll the engine makes every
realtime_cdc_poll_ms while nothing changes), which is why the engine polls the SQL interface
rather than keeping a streaming replication connection (see docs/realtime-changes.md).

Last line: RESULT changes_p50_ms=... changes_p99_ms=... insert_p50_ms=... insert_p99_ms=... empty_read_p50_ms=...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench.common import DB_PASS, PlatformBench, pct, throwaway_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Bench(PlatformBench):
    def cleanup(self) -> None:
        with psycopg.connect(self.s.conninfo_for("postgres"), autocommit=True) as conn:
            for ref in getattr(self, "refs", []):
                conn.execute(f'DROP DATABASE IF EXISTS "{ref}" WITH (FORCE)')
                for role in (f"supabase_auth_admin.{ref}", f"supabase_storage_admin.{ref}",
                             f"supabase_realtime_admin.{ref}", f"postgres.{ref}", f"authenticator.{ref}", ref):
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')

    def project(self) -> str:
        ref = self.create_project("Changes bench", "changes")
        self.refs = [ref]
        deadline = time.monotonic() + 120
        while self.http.get(f"{self.base}/v1/projects/{ref}", headers=self.auth).json()["status"] != "ACTIVE_HEALTHY":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ref} did not come up")
            time.sleep(0.2)
        return ref

    def owner(self, ref: str) -> psycopg.Connection:
        return psycopg.connect(host=self.s.tenant_db_host, port=self.s.tenant_db_port, dbname=ref,
                               user=f"postgres.{ref}", password=DB_PASS, autocommit=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=20.0, help="pause between two inserts")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-changes-"))
    os.chmod(workdir, 0o711)
    settings = throwaway_settings("cdcbench", workdir, edge=True)
    bench = Bench(settings, workdir)
    try:
        bench.start()
        bench.sign_up()
        ref = bench.project()
        anon = bench.api_keys(ref)["anon"]
        with bench.owner(ref) as c:
            c.execute("CREATE TABLE bench_rows (id int PRIMARY KEY, sent_ms bigint); "
                      "GRANT ALL ON bench_rows TO anon, authenticated, service_role")
        r = bench.http.put(f"{bench.base}/platform/projects/{ref}/realtime/publication", headers=bench.auth,
                           json={"tables": [{"schema": "public", "name": "bench_rows", "published": True}]})
        r.raise_for_status()
        node = subprocess.Popen(["node", str(ROOT / "tests" / "js" / "realtime_changes.mjs"), "latency"], cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert node.stdin is not None and node.stdout is not None
        node.stdin.write(json.dumps({"url": f"{settings.edge_public_url}/{ref}", "anon": anon, "vsn": "2.0.0",
                                     "table": "bench_rows", "count": args.rows}))
        node.stdin.close()
        ready = node.stdout.readline()
        if json.loads(ready) != {"ready": True}:
            raise RuntimeError(f"subscriber: {ready}")
        inserts = []
        with bench.owner(ref) as c:
            for i in range(args.rows):
                t0 = time.perf_counter()
                c.execute("INSERT INTO bench_rows VALUES (%s, (extract(epoch from clock_timestamp()) * 1000)::bigint)",
                          (i,))
                inserts.append((time.perf_counter() - t0) * 1000)
                time.sleep(args.gap_ms / 1000)
        node.stdin = None  # closed above: communicate must not flush it
        out = json.loads(node.communicate(timeout=300)[0].strip().splitlines()[-1])
        lat = [float(x) for x in out["ms"]]
        # An empty read of a slot, as the engine does between changes (superuser-free: the
        # project's realtime login is not needed to measure the server's cost).
        with psycopg.connect(settings.conninfo_for(ref), autocommit=True) as c:
            c.execute("SELECT pg_create_logical_replication_slot('bench_empty_read', 'pgoutput', true)")
            reads = []
            for _ in range(200):
                t0 = time.perf_counter()
                c.execute("SELECT count(*) FROM pg_logical_slot_get_binary_changes('bench_empty_read', NULL, NULL, "
                          "'proto_version', '1', 'publication_names', 'supabase_realtime')").fetchone()
                reads.append((time.perf_counter() - t0) * 1000)
                time.sleep(settings.realtime_cdc_poll_ms / 1000)
        print(f"{len(lat)} changes, insert to callback: p50 {statistics.median(lat):.1f} ms p99 {pct(lat, 99):.1f} ms "
              f"max {max(lat):.1f} ms; plain INSERT round trip p50 {statistics.median(inserts):.2f} ms "
              f"p99 {pct(inserts, 99):.2f} ms; empty slot read p50 {statistics.median(reads):.2f} ms "
              f"p99 {pct(reads, 99):.2f} ms (poll every {settings.realtime_cdc_poll_ms} ms)", flush=True)
        print(f"RESULT changes_p50_ms={statistics.median(lat):.1f} changes_p99_ms={pct(lat, 99):.1f} "
              f"changes_max_ms={max(lat):.1f} insert_p50_ms={statistics.median(inserts):.2f} "
              f"insert_p99_ms={pct(inserts, 99):.2f} empty_read_p50_ms={statistics.median(reads):.2f} "
              f"empty_read_p99_ms={pct(reads, 99):.2f} poll_ms={settings.realtime_cdc_poll_ms} rows={len(lat)}")
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
