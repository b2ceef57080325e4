"""Benchmark: project APIs (REST on each project's own PostgREST) through the project edge,
on real processes, a throwaway database and vhost.

Measures, in one run:
- memory: total RSS of every platform process (and their children: the PostgRESTs the edge
  runs) on the fresh platform, after creating `--idle` projects nobody calls (idle tenants
  should cost nothing), and with `--active` of them serving REST (RSS per active project);
- cold start to first REST answer: the first `GET /rest/v1/<table>` of a project whose
  PostgREST is not running (the edge starts it and holds the request), for each of the
  `--active` projects; baseline: the same PostgREST binary started by hand with the same
  settings, until it answers (what PostgREST itself needs);
- warm REST latency, one request at a time, through the edge (`<project URL>/rest/v1/items`,
  apikey check, proxy) and directly to the same PostgREST on its Unix socket, interleaved,
  so `added_p50_ms`/`added_p99_ms` are the edge's cost.

PostgreSQL and RabbitMQ are system services, not counted in the platform's RSS.

Run: .venv/bin/python bench/project_apis.py [--idle 50] [--active 10] [--requests 2000]
Last line: RESULT cold_start_ms_p50=... cold_start_ms_max=... postgrest_alone_start_ms=... warm_p50_ms=...
           warm_p99_ms=... direct_p50_ms=... direct_p99_ms=... added_p50_ms=... added_p99_ms=...
           rss_fresh_mb=... rss_idle_mb=... idle_ratio=... rss_active_mb=... rss_per_active_mb=...
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import psycopg  # noqa: E402
import requests  # noqa: E402

from gateway.edge.rest import postgrest_bin, postgrest_env  # noqa: E402
from services.shared.tenants import tenant_from  # noqa: E402
from bench.common import DB_PASS, PlatformBench, UnixHTTP, pct, throwaway_settings  # noqa: E402


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class Bench(PlatformBench):
    def start(self) -> None:
        super().start()
        from nameko.standalone.rpc import ClusterRpcProxy

        self._rpc_cm = ClusterRpcProxy({"AMQP_URI": self.s.amqp_uri}, timeout=20)
        self.rpc = self._rpc_cm.__enter__()

    def stop(self) -> None:
        try:
            self._rpc_cm.__exit__(None, None, None)
        except Exception:  # noqa: BLE001
            pass
        super().stop()

    def cleanup(self) -> None:
        with psycopg.connect(self.s.conninfo_for("postgres"), autocommit=True) as conn:
            for ref in getattr(self, "refs", []):
                conn.execute(f'DROP DATABASE IF EXISTS "{ref}" WITH (FORCE)')
                for role in (f"postgres.{ref}", f"authenticator.{ref}", ref):
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')

    def platform_rss_mb(self) -> float:
        pids = {d for p in self.platform.procs.values() for d in descendants(p.pid)}
        return sum(rss_kib(p) for p in pids) / 1024

    def settle(self) -> float:
        """RSS once it stops moving (a few samples apart), not a fixed sleep."""
        last, same = -1.0, 0
        for _ in range(100):
            now = self.platform_rss_mb()
            same = same + 1 if abs(now - last) < 1.0 else 0
            if same >= 3:
                return now
            last = now
            time.sleep(0.3)
        return last

    def create_projects(self, n: int) -> list[str]:
        # The free plan allows 2 active projects per organization: one organization per pair.
        orgs = [self.http.post(self.base + "/v1/organizations", json={"name": f"Bench {i}"},
                               headers=self.auth).json()["slug"] for i in range((n + 1) // 2)]

        def one(i: int) -> str:
            r = requests.post(self.base + "/v1/projects", headers=self.auth, timeout=60,
                              json={"name": f"bench-{i}", "organization_slug": orgs[i // 2], "db_pass": DB_PASS})
            r.raise_for_status()
            return str(r.json()["id"])

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            refs = list(pool.map(one, range(n)))
        self.refs = refs
        deadline = time.monotonic() + 60 + 3 * n
        pending = set(refs)
        while pending:
            for ref in list(pending):
                status = self.http.get(f"{self.base}/v1/projects/{ref}", headers=self.auth).json()["status"]
                if status == "ACTIVE_HEALTHY":
                    pending.discard(ref)
                elif status == "INIT_FAILED" or time.monotonic() > deadline:
                    raise RuntimeError(f"{ref} did not come up: {status}")
            time.sleep(0.2)
        return refs

    def anon(self, ref: str) -> str:
        return self.api_keys(ref)["anon"]

    def make_table(self, ref: str) -> None:
        with psycopg.connect(host=self.s.tenant_db_host, port=self.s.tenant_db_port, dbname=ref,
                             user=f"postgres.{ref}", password=DB_PASS, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text); "
                         "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g ON CONFLICT DO NOTHING")

    def rest_url(self, ref: str) -> str:
        return f"{self.s.project_api_url(ref)}/rest/v1/items?select=id,name&order=id"

    def cold_start(self, ref: str, key: str) -> float:
        t0 = time.perf_counter()
        r = requests.get(self.rest_url(ref), headers={"apikey": key}, timeout=30)
        took = (time.perf_counter() - t0) * 1000
        if r.status_code != 200 or len(r.json()) != 10:
            raise RuntimeError(f"first REST answer of {ref}: {r.status_code} {r.text[:200]}")
        return took

    def postgrest_alone(self, ref: str, workdir: Path) -> float:
        """PostgREST started by hand with the same settings, until it answers."""
        tenant = tenant_from({**self.rpc.projects.edge_tenant(ref)}, self.s)
        sock = workdir / f"alone-{ref}.sock"
        env = postgrest_env(tenant, tenant.authenticator_password, sock)
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(postgrest_bin(self.s))], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while True:
                if sock.exists():
                    try:
                        c = UnixHTTP(str(sock), "rest")
                        c.request("HEAD", "/")
                        if c.getresponse().status < 500:
                            return (time.perf_counter() - t0) * 1000
                    except OSError:
                        pass
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("PostgREST alone never answered")
                time.sleep(0.002)
        finally:
            proc.terminate()
            proc.wait(10)

    def warm(self, ref: str, key: str, n: int) -> tuple[list[float], list[float]]:
        session = requests.Session()
        url = self.rest_url(ref)
        for _ in range(50):
            session.get(url, headers={"apikey": key}, timeout=30).raise_for_status()
        sock = Path(tempfile.gettempdir()) / f"supaplatform-rest-{os.getuid()}-{self.s.edge_port}" / f"{ref}.sock"
        direct = UnixHTTP(str(sock), "rest")
        path = "/items?select=id,name&order=id"
        via, raw = [], []
        for _ in range(n):
            t = time.perf_counter()
            r = session.get(url, headers={"apikey": key}, timeout=30)
            via.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            t = time.perf_counter()
            direct.request("GET", path, headers={"Authorization": f"Bearer {key}"})
            resp = direct.getresponse()
            resp.read()
            raw.append((time.perf_counter() - t) * 1000)
            assert resp.status == 200
        return via, raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=int, default=50)
    ap.add_argument("--active", type=int, default=10)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (process logs) and say where")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-apis-"))
    os.chmod(workdir, 0o711)
    settings = throwaway_settings("apibench", workdir, edge=True, rest_idle_s=3600.0)
    bench = Bench(settings, workdir)
    try:
        bench.start()
        bench.sign_up()
        fresh = bench.settle()
        print(f"fresh platform: {fresh:.0f} MB RSS", flush=True)
        refs = bench.create_projects(args.idle)
        idle = bench.settle()
        print(f"{args.idle} idle projects: {idle:.0f} MB RSS ({idle / fresh:.2f}x fresh)", flush=True)
        active = refs[:args.active]
        keys = {ref: bench.anon(ref) for ref in active}
        for ref in active:
            bench.make_table(ref)
        alone = statistics.median([bench.postgrest_alone(ref, workdir) for ref in active[:5]])
        cold = [bench.cold_start(ref, keys[ref]) for ref in active]
        print(f"cold start to first REST answer, ms: {', '.join(f'{c:.0f}' for c in cold)}; "
              f"PostgREST alone: {alone:.0f} ms", flush=True)
        busy = bench.settle()
        per_active = (busy - idle) / max(len(active), 1)
        print(f"{len(active)} active projects: {busy:.0f} MB RSS, {per_active:.1f} MB per active project", flush=True)
        via, raw = bench.warm(active[0], keys[active[0]], args.requests)
        print(f"warm REST, one at a time, {len(via)} each: through the edge p50 {statistics.median(via):.2f} ms "
              f"p99 {pct(via, 99):.2f} ms; PostgREST directly p50 {statistics.median(raw):.2f} ms "
              f"p99 {pct(raw, 99):.2f} ms", flush=True)
        print(f"RESULT cold_start_ms_p50={statistics.median(cold):.0f} cold_start_ms_max={max(cold):.0f} "
              f"postgrest_alone_start_ms={alone:.0f} "
              f"warm_p50_ms={statistics.median(via):.2f} warm_p99_ms={pct(via, 99):.2f} "
              f"direct_p50_ms={statistics.median(raw):.2f} direct_p99_ms={pct(raw, 99):.2f} "
              f"added_p50_ms={statistics.median(via) - statistics.median(raw):.2f} "
              f"added_p99_ms={pct(via, 99) - pct(raw, 99):.2f} "
              f"rss_fresh_mb={fresh:.0f} rss_idle_mb={idle:.0f} idle_ratio={idle / fresh:.2f} "
              f"rss_active_mb={busy:.0f} rss_per_active_mb={per_active:.1f}")
    finally:
        bench.stop()
        if args.keep:
            print(f"logs kept in {workdir / 'logs'}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
