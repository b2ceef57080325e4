"""Benchmark: the control plane's read path through the gateway, on real processes.

Starts the processes a read needs (orgs, billing, projects, the gateway, the relay), the
way `make run` starts them (`services.shared.runner.Platform`), on a throwaway database,
vhost and state directory and on free ports. The provisioner is left out on purpose: 200
projects would otherwise be 200 tenant databases on the shared cluster. The projects stay
`COMING_UP`, which reads exactly as an active project does (the same aggregates, the same
rows, the same RPCs).

Two users: one whose organization has 1 project, one whose organization (moved to the
pro plan: no project limit) has `--projects` (200). Then, for each endpoint in the same run:

- `GET /health` (the gateway alone: the baseline every figure is divided by),
- `GET /v1/organizations`,
- `GET /v1/projects` (1 project, and 200),
- `GET /v1/projects/{ref}` (in the organization of 1, and of 200),

1. **throughput** at concurrency 20 (`--concurrency`) for `--seconds` (10): requests/s,
   and CPU ms per request per process (from /proc; PostgreSQL's and RabbitMQ's figures
   are server-wide, so they include anyone else's load);
2. **latency at a fixed rate**: 200 requests/s (`--rate`) for 30 s (`--rate-seconds`), 20
   workers each paced to rate/20 (as `hey -q`): p50, p99, errors, rate achieved.

Each figure is also printed as a ratio to `/health`'s. The load generator is pure Python
(threads, one keep-alive connection each), so its own CPU is counted ("bench client").

`--profile DIR` has every nameko process sample its own stacks (services/shared/sampler.py,
the `profile_dir` setting) during each endpoint's throughput phase, and prints, per endpoint
and process, where its busy samples went by category (HTTP server, RPC, AMQP client, JSON,
PostgreSQL client, ...) as a share and as ms per request, and the functions on most samples.

Run: .venv/bin/python bench/api.py [--projects 200] [--seconds 10] [--rate 200] [--rate-seconds 30]
     [--concurrency 20] [--profile DIR] [--only health,projects_200,...]
Last line: RESULT health_rps=... orgs_rps=... projects_1_rps=... projects_200_rps=... project_1_rps=...
           project_200_rps=... <name>_p50_ms=... <name>_p99_ms=... <name>_errors=... <name>_ratio=...
           <name>_cpu_ms=... projects_200_vs_1=... targets_met=...
Targets: at 200 req/s, GET /v1/projects and GET /v1/organizations p99 <= 25 ms with no errors;
throughput at concurrency 20 >= 25 % of /health's; 200 projects <= 1.5x one project.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import requests  # noqa: E402

from bench.common import PASSWORD, PlatformBench, free_port, pct, sign_up, throwaway_settings  # noqa: E402
from bench.cpu import CpuMeter  # noqa: E402
from bench.provision import loadavg, postmaster_children_cpu  # noqa: E402

PROCESSES = ["orgs", "billing", "projects", "gateway", "relay"]


# ---- load generator ---------------------------------------------------------------------------

class Load:
    """`concurrency` threads, each with one keep-alive HTTP/1.1 connection, sending GET path
    until `seconds` have passed; paced to `rate` requests/s overall when given."""

    def __init__(self, port: int, path: str, headers: dict[str, str], concurrency: int, seconds: float,
                 rate: float | None = None):
        self.port, self.path, self.headers = port, path, headers
        self.concurrency, self.seconds, self.rate = concurrency, seconds, rate
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _worker(self, start: float, end: float, offset: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        mine: list[float] = []
        errors: Counter[str] = Counter()
        interval = self.concurrency / self.rate if self.rate else 0.0
        due = start + offset
        while True:
            now = time.monotonic()
            if interval:
                if due > now:
                    time.sleep(due - now)
                due += interval
            t0 = time.monotonic()
            if t0 >= end:
                break
            try:
                conn.request("GET", self.path, headers=self.headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors[str(r.status)] += 1
                else:
                    mine.append(time.monotonic() - t0)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()
        with self.lock:
            self.latencies += mine
            self.errors.update(errors)

    def run(self) -> dict[str, Any]:
        start = time.monotonic() + 0.05
        end = start + self.seconds
        interval = self.concurrency / self.rate if self.rate else 0.0
        threads = [threading.Thread(target=self._worker, args=(start, end, interval * i / self.concurrency))
                   for i in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = max(time.monotonic() - start, 1e-9)
        lat = [x * 1000 for x in self.latencies]
        n = len(lat) + sum(self.errors.values())
        return {"requests": n, "ok": len(lat), "rps": len(lat) / wall, "errors": sum(self.errors.values()),
                "error_kinds": dict(self.errors), "p50": statistics.median(lat) if lat else float("nan"),
                "p99": pct(lat, 99) if lat else float("nan"), "wall": wall}


# ---- the platform -----------------------------------------------------------------------------

class Setup(PlatformBench):
    processes = PROCESSES

    def __init__(self, workdir: Path, projects: int, profile: Path | None = None):
        extra = {"profile_dir": str(profile.resolve())} if profile else {}
        super().__init__(throwaway_settings("apibench", workdir, edge_port=free_port(), password_hash_time_cost=1,
                                            password_hash_memory_kib=8192, **extra), workdir)
        self.projects = projects
        self.slugs: list[str] = []

    def user(self, n_projects: int, plan: str) -> tuple[dict[str, str], str]:
        """A user with a token and one organization holding n_projects; (auth header, a ref)."""
        auth = sign_up(requests.Session(), self.base, self.s, email_prefix="apibench", display_name=None)
        r = self.http.post(self.base + "/v1/organizations", json={"name": f"Bench {n_projects}"}, headers=auth)
        r.raise_for_status()
        slug = r.json()["slug"]
        self.slugs.append(slug)
        if plan != "free":
            for _ in range(50):
                r = self.http.put(f"{self.base}/platform/organizations/{slug}/billing/subscription",
                                  json={"plan": plan}, headers=auth)
                if r.status_code not in (404, 409):  # billing has not started the free plan yet
                    break
                time.sleep(0.2)
            r.raise_for_status()
        else:
            for _ in range(50):  # creates ask billing's entitlements: wait until it knows the org
                if self.http.get(f"{self.base}/platform/organizations/{slug}/billing/subscription",
                                 headers=auth).status_code == 200:
                    break
                time.sleep(0.2)
        refs = []
        lock = threading.Lock()

        def create(i: int) -> None:
            s = requests.Session()
            r = s.post(self.base + "/v1/projects", headers=auth, timeout=60,
                       json={"name": f"p{i}", "organization_slug": slug, "db_pass": PASSWORD})
            r.raise_for_status()
            with lock:
                refs.append(r.json()["ref"])

        todo = list(range(n_projects))
        while todo:
            batch, todo = todo[:10], todo[10:]
            threads = [threading.Thread(target=create, args=(i,)) for i in batch]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if len(refs) != n_projects:
            raise RuntimeError(f"created {len(refs)} of {n_projects} projects")
        listed = self.http.get(self.base + "/v1/projects", headers=auth).json()
        if len(listed) != n_projects:
            raise RuntimeError(f"listed {len(listed)} of {n_projects} projects")
        return auth, refs[0]


# ---- query plans --------------------------------------------------------------------------------

def explain(settings: Any, slugs: list[str]) -> list[str]:
    """EXPLAIN ANALYZE of the read models' queries the endpoints run, on the bench's database:
    the project list of the organization with the most projects, and the orgs lookups."""
    from services.projects import readmodel as projects_rm
    from services.shared.db import connect

    try:
        from services.orgs import readmodel as orgs_rm
    except ImportError:
        return []

    out: list[str] = []
    if not hasattr(projects_rm, "LIST_JSON") or not slugs:
        return out  # code from before these read models (a before/after comparison)
    with connect(settings, autocommit=True) as conn:
        user_id, token_id = conn.execute("SELECT user_id, token_id FROM orgs.token_views ORDER BY version DESC "
                                         "LIMIT 1").fetchone() or (None, None)
        queries = [("GET /v1/projects (organization of the most projects)", projects_rm.LIST_JSON, ([slugs[-1]],)),
                   ("token authentication", orgs_rm.TOKEN, (token_id,)),
                   ("organization list", orgs_rm.ORGS_OF, (user_id,))]
        for title, sql, params in queries:
            out.append(title + ":")
            for (line,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall():
                out.append("   " + line)
    return out


# ---- profiles ---------------------------------------------------------------------------------

# Where a sample's time goes: the first rule that matches, looking from the innermost frame
# outwards (so JSON encoding called by kombu counts as JSON, a query as PostgreSQL).
CATEGORIES = [
    ("postgresql client (psycopg)", ("psycopg/", "psycopg_pool/")),
    ("json (de)serialisation", ("json/", "kombu/serialization", "marshmallow/")),
    ("amqp client (kombu, py-amqp)", ("amqp/", "kombu/")),
    ("nameko rpc", ("nameko/rpc.py", "nameko/amqp/", "nameko/messaging.py")),
    ("http server (eventlet.wsgi, werkzeug)", ("eventlet/wsgi.py", "werkzeug/", "nameko/web/")),
    ("nameko containers, workers", ("nameko/",)),
    ("eventsourcing", ("eventsourcing/",)),
    ("logging", ("logging/",)),
    ("eventlet hub, green threads", ("eventlet/", "greenlet", "threading.py", "queue.py")),
    ("gateway code", ("gateway/",)),
    ("service code", ("services/",)),
]


def categorise(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        where = frame.split(" (", 1)[1] if " (" in frame else frame
        for name, marks in CATEGORIES:
            if any(m in where for m in marks):
                return name
    return "other"


def read_profile(path: Path) -> tuple[list[tuple[str, int]], int]:
    """(stacks with their counts, idle samples) of one sampler file."""
    stacks, idle = [], 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        if stack == "idle":
            idle += int(count)
        else:
            stacks.append((stack, int(count)))
    return stacks, idle


def profile_breakdown(path: Path, cpu_ms: float) -> list[str]:
    """Busy samples by category, each also as ms per request (its share of the process's CPU
    ms per request, from /proc)."""
    stacks, idle = read_profile(path)
    busy = sum(n for _, n in stacks)
    by: Counter[str] = Counter()
    for stack, n in stacks:
        by[categorise(stack)] += n
    out = [f"{busy} busy samples, {idle} idle; {cpu_ms:.2f} CPU ms/request"]
    for name, n in by.most_common():
        out.append(f"{n / max(busy, 1):6.1%}  {cpu_ms * n / max(busy, 1):6.2f} ms  {name}")
    return out


def summarise_profile(path: Path, top: int = 14) -> list[str]:
    """The functions on most busy samples (inclusive), apart from the interpreter's plumbing."""
    stacks, _ = read_profile(path)
    total = sum(n for _, n in stacks)
    inclusive: Counter[str] = Counter()
    for stack, n in stacks:
        seen = set()
        for frame in stack.split(";"):
            name = frame.split(" (")[0]
            where = frame.split(" (", 1)[1] if " (" in frame else ""
            where = where.replace(str(ROOT) + "/", "").split(":")[0]
            if "/site-packages/" in where:
                where = where.split("/site-packages/", 1)[1]
            key = f"{name} ({where})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    skip = ("threading.py", "eventlet/greenthread", "eventlet/hubs", "greenlet", "nameko/containers.py",
            "<module>", "run (", "_bootstrap", "main (")
    out = []
    for key, n in inclusive.most_common(300):
        if any(s in key for s in skip):
            continue
        out.append(f"{n / max(total, 1):6.1%}  {key}")
        if len(out) >= top:
            break
    return out


# ---- main -------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projects", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10, help="throughput phase per endpoint")
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--rate-seconds", type=float, default=30)
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--only", default="", help="comma-separated endpoint names to run (health always runs)")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        (args.profile / "on").unlink(missing_ok=True)
    setup = Setup(workdir, args.projects, args.profile)
    print(f"load average before: {loadavg()} ({os.cpu_count()} cores)", flush=True)
    result: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        setup.start()
        auth1, ref1 = setup.user(1, "free")
        auth200, ref200 = setup.user(args.projects, "pro")
        print(f"platform up and {args.projects + 1} projects created in {time.monotonic() - t0:.1f} s", flush=True)
        endpoints = {
            "health": ("/health", {}),
            "orgs": ("/v1/organizations", auth1),
            "projects_1": ("/v1/projects", auth1),
            f"projects_{args.projects}": ("/v1/projects", auth200),
            "project_1": (f"/v1/projects/{ref1}", auth1),
            f"project_{args.projects}": (f"/v1/projects/{ref200}", auth200),
        }
        if args.only:
            wanted = {"health", *args.only.split(",")}
            endpoints = {k: v for k, v in endpoints.items() if k in wanted}
        port = setup.s.gateway_port
        pids = {name: p.pid for name, p in setup.platform.procs.items()}
        pids["bench client"] = os.getpid()
        for path, headers in endpoints.values():  # warm every path once (pools, caches, imports)
            Load(port, path, headers, 2, 1.0).run()
        figures: dict[str, dict[str, Any]] = {}
        for name, (path, headers) in endpoints.items():
            meter = CpuMeter(pids)
            meter.start()
            exited0 = postmaster_children_cpu()
            if args.profile:
                (args.profile / "on").write_text(name)  # the processes' samplers file this phase apart
            tp = Load(port, path, headers, args.concurrency, args.seconds).run()
            if args.profile:
                (args.profile / "on").unlink()
            used = meter.stop()
            used["postgresql (all)"] += postmaster_children_cpu() - exited0
            cpu_ms = {k: v * 1000 / max(tp["ok"], 1) for k, v in used.items()
                      if k not in ("machine capacity", "wall")}
            fixed = Load(port, path, headers, args.concurrency, args.rate_seconds, rate=args.rate).run()
            figures[name] = {"tp": tp, "fixed": fixed, "cpu_ms": cpu_ms}
            ours = sum(v for k, v in cpu_ms.items() if k != "machine busy")
            print(f"{name:<14} GET {path}", flush=True)
            print(f"   concurrency {args.concurrency}: {tp['rps']:7.1f} req/s, p50 {tp['p50']:.1f} ms, "
                  f"p99 {tp['p99']:.1f} ms, errors {tp['errors']} {tp['error_kinds'] or ''}", flush=True)
            print(f"   at {args.rate:.0f} req/s: achieved {fixed['rps']:.1f} req/s, p50 {fixed['p50']:.1f} ms, "
                  f"p99 {fixed['p99']:.1f} ms, errors {fixed['errors']} {fixed['error_kinds'] or ''}", flush=True)
            print("   CPU ms per request: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(
                cpu_ms.items(), key=lambda kv: -kv[1]) if k != "machine busy")
                + f"; all listed {ours:.2f}; machine busy {cpu_ms['machine busy']:.2f}", flush=True)
        if args.profile:
            time.sleep(1.5)  # the samplers write their files every second
            for name in figures:
                for f in sorted((args.profile / name).glob("*.txt")):
                    print(f"profile {name}, {f.stem} (throughput phase; busy samples by category):", flush=True)
                    for line in profile_breakdown(f, figures[name]["cpu_ms"].get(f.stem, 0.0)):
                        print("   " + line, flush=True)
                    print("   top functions (inclusive share of busy samples):", flush=True)
                    for line in summarise_profile(f):
                        print("      " + line, flush=True)
        for line in explain(setup.s, setup.slugs):
            print(line, flush=True)
        h = figures["health"]
        print("ratios to /health (throughput: x/health; p99 and CPU ms: x/health):", flush=True)
        for name, f in figures.items():
            cpu = sum(v for k, v in f["cpu_ms"].items() if k not in ("machine busy", "bench client"))
            hcpu = sum(v for k, v in h["cpu_ms"].items() if k not in ("machine busy", "bench client"))
            ratio = f["tp"]["rps"] / h["tp"]["rps"]
            print(f"   {name:<14} throughput {ratio:6.1%}  p99@rate {f['fixed']['p99'] / h['fixed']['p99']:6.1f}x  "
                  f"server CPU/request {cpu / hcpu:6.1f}x ({cpu:.2f} ms)", flush=True)
            result[f"{name}_rps"] = round(f["tp"]["rps"], 1)
            result[f"{name}_p50_ms"] = round(f["fixed"]["p50"], 1)
            result[f"{name}_p99_ms"] = round(f["fixed"]["p99"], 1)
            result[f"{name}_errors"] = f["fixed"]["errors"] + f["tp"]["errors"]
            result[f"{name}_ratio"] = round(ratio, 3)
            result[f"{name}_cpu_ms"] = round(cpu, 2)
        big, small = f"projects_{args.projects}", "projects_1"
        met = True
        if big in figures and small in figures:
            cost = figures[big]["tp"]["rps"] and figures[small]["tp"]["rps"] / figures[big]["tp"]["rps"]
            result[f"{big}_vs_1"] = round(cost, 2)
            met &= cost <= 1.5
        for name in ("orgs", small, big):
            if name in figures:
                f = figures[name]
                met &= f["fixed"]["p99"] <= 25 and result[f"{name}_errors"] == 0 and f["tp"]["rps"] >= 0.25 * h["tp"]["rps"]
        result["targets_met"] = "yes" if met else "no"
        result["load"] = loadavg()
    finally:
        setup.stop()
        if args.keep_logs:
            print(f"logs kept in {workdir / 'logs'}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
