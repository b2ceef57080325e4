"""Benchmark: project provisioning through the gateway, on real processes.

Starts the processes a create needs (orgs, billing, projects, provisioner, the gateway, the
relay) on a throwaway database, vhost and state directory, signs a user up, creates an
organization and moves it to the pro plan (no project limit; `--orgs N` spreads the creates
over N pro organizations instead), creates one project alone (the warm-up: the relay and the
pools are up, as on a running platform), then:

1. **Bursts.** `--rounds` (3) times: wait until the spare databases are ready (the pool is
   sized for the burst: `--spares`, default `--projects`), then `--projects` (20) clients
   each `POST /v1/projects` at the same moment; one poller lists `GET /v1/projects` every
   `--poll-ms` (100) and notes when each project is first seen `ACTIVE_HEALTHY`.
   create_ms = that moment - the client's POST. Each round has its own user and
   organization; its projects are deleted before the next round.
2. **Where the time goes.** For each project, from the stores (projects' Project events,
   the provisioner's saga history, both stamped when they happened): POST -> project
   recorded -> saga opened -> each step -> saga succeeded -> project ACTIVE_HEALTHY
   (recorded) -> seen by the client. Plus CPU per process during the bursts (PostgreSQL and
   RabbitMQ figures are server-wide: they include anyone else's load).
3. **Pause -> restore of `--mb` (100) MB.** The warm-up project gets about 100 MB of rows as
   its own tenant login, then `POST .../pause` until `INACTIVE` and `POST .../restore` until
   `ACTIVE_HEALTHY`; every row must be there.

Everything it created is deleted at the end (also after a failure): the projects through
the gateway, then any tenant database or role left (`<ref>`, `postgres.<ref>`,
`authenticator.<ref>`), spare databases beyond what the cluster had before (at least 2),
the database, the vhost and the state directory.

Run: .venv/bin/python bench/provision.py [--projects 20] [--rounds 3] [--mb 100] [--spares N]
     [--orgs 1] [--verbose] [--profile DIR] [--perf FILE]
Last line: RESULT create_p50_ms=... create_p95_ms=... create_max_ms=... round_p50s_ms=...
           single_create_ms=... recorded_p50_ms=... recorded_p95_ms=... pause_ms=...
           restore_ms=... restore_mb=... projects=... rounds=... orgs=... spares=...
           cpu_busy=... load=... targets_met=...
Targets: create p50 <= 1000 ms, p95 <= 2000 ms; restore of 100 MB <= 5000 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import psycopg  # noqa: E402
import requests  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.common import PASSWORD, PlatformBench, pct, throwaway_settings  # noqa: E402
from bench.cpu import CLK_TCK, CpuMeter, pids_named  # noqa: E402
from bench.driver import fill  # noqa: E402  (logs in with PASSWORD, the same as bench.driver's)
from services.shared.settings import Settings  # noqa: E402

PROCESSES = ["orgs", "billing", "projects", "provisioner", "gateway", "relay"]
TARGETS = {"create_p50_ms": 1000, "create_p95_ms": 2000, "restore_ms": 5000}


def ts(dt: datetime) -> float:
    return dt.timestamp()


def postmaster_children_cpu() -> float:
    """CPU of PostgreSQL backends that have exited (the postmaster reaps them): the driver's
    short-lived connections are not in the live-process figures."""
    total = 0.0
    names = set(pids_named("postgres", "postmaster"))
    for pid in names:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) not in names:  # the postmaster: its parent is not a postgres process
            total += (int(fields[13]) + int(fields[14])) / CLK_TCK
    return total


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


class Bench(PlatformBench):
    processes = PROCESSES

    def __init__(self, settings: Settings, workdir: Path, spares: int):
        super().__init__(settings, workdir)
        self.spares = spares
        self.refs: dict[str, dict[str, str]] = {}  # every project created -> its owner's auth header
        self.spares_before: set[str] = set()

    # -- platform ------------------------------------------------------------------------------
    def before_processes(self) -> None:
        self.spares_before = set(self.spare_names())

    def spare_names(self, ready_only: bool = False) -> list[str]:
        from services.provisioner.drivers.local import SPARE_PREFIX

        with psycopg.connect(self.s.conninfo_for("postgres"), autocommit=True) as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)"
                                + (" AND NOT datallowconn" if ready_only else ""), (SPARE_PREFIX,)).fetchall()
        return [r[0] for r in rows]

    def wait_spares(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        while len(self.spare_names(ready_only=True)) < self.spares and time.monotonic() - t0 < timeout:
            time.sleep(0.2)
        return time.monotonic() - t0

    def setup_user(self, orgs: int) -> list[str]:
        self.sign_up()
        slugs = []
        for i in range(orgs):
            r = self.http.post(self.base + "/v1/organizations", json={"name": f"Bench {i}"}, headers=self.auth)
            r.raise_for_status()
            slug = r.json()["slug"]
            for _ in range(10):
                r = self.http.put(f"{self.base}/platform/organizations/{slug}/billing/subscription",
                                  json={"plan": "pro"}, headers=self.auth)
                if r.status_code != 409:  # 409: billing was starting the free plan at that moment
                    break
                time.sleep(0.2)
            r.raise_for_status()
            slugs.append(slug)
        return slugs

    def list_status(self, session: requests.Session) -> dict[str, str]:
        r = session.get(self.base + "/v1/projects", headers=self.auth, timeout=30)
        r.raise_for_status()
        return {p["ref"]: p["status"] for p in r.json()}

    def wait_status(self, ref: str, wanted: str, timeout: float = 120, poll: float = 0.05) -> float:
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(f"{self.base}/v1/projects/{ref}", headers=self.refs[ref], timeout=30)
            r.raise_for_status()
            status = r.json()["status"]
            if status == wanted:
                return time.time()
            if status.endswith("_FAILED"):
                detail = self.http.get(f"{self.base}/platform/projects/{ref}", headers=self.refs[ref],
                                       timeout=30).json()
                raise RuntimeError(f"{ref}: {status}: {detail.get('progress')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ref} still {status} after {timeout:.0f} s")
            time.sleep(poll)

    def profile(self, out: Path) -> list[subprocess.Popen[bytes]]:
        """py-spy (raw collapsed stacks, GIL holders only) of every Python process."""
        out.mkdir(parents=True, exist_ok=True)
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        return [subprocess.Popen([py_spy, "record", "--pid", str(p.pid), "--rate", "100", "--format", "raw", "--gil",
                                  "--output", str(out / f"{name}.txt"), "--nonblocking"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for name, p in self.platform.procs.items()]

    # -- 1. the burst --------------------------------------------------------------------------
    def burst(self, slugs: list[str], n: int, poll_s: float, timeout: float = 90) -> dict[str, dict[str, float]]:
        """n creates at once; a poller lists the projects from the first POST on (as a
        dashboard would) and notes when each is first seen ACTIVE_HEALTHY."""
        go = threading.Barrier(n + 1)
        posted: dict[str, dict[str, float]] = {}
        errors: list[str] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            session = requests.Session()
            body = {"name": f"bench {i}", "organization_slug": slugs[i % len(slugs)], "db_pass": PASSWORD,
                    "region": "us-east-1"}
            go.wait()
            t0 = time.time()
            try:
                r = session.post(self.base + "/v1/projects", json=body, headers=self.auth, timeout=60)
            except requests.RequestException as exc:
                errors.append(str(exc))
                return
            t1 = time.time()
            if r.status_code != 201:
                errors.append(f"{r.status_code} {r.text[:200]}")
                return
            with lock:
                posted[r.json()["ref"]] = {"post": t0, "answered": t1}

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        go.wait()
        session = requests.Session()
        deadline = time.monotonic() + timeout
        seen: dict[str, float] = {}
        while True:
            statuses = self.list_status(session)
            now = time.time()
            for ref, st in statuses.items():
                if st == "ACTIVE_HEALTHY" and ref not in seen:
                    seen[ref] = now
                elif st.endswith("_FAILED"):
                    raise RuntimeError(f"{ref} ended {st}")
            with lock:
                answered = set(posted)
            clients_done = not any(t.is_alive() for t in threads)
            if clients_done and answered <= set(seen):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(answered - set(seen))} projects not ACTIVE_HEALTHY after {timeout:.0f} s")
            time.sleep(poll_s)
        for t in threads:
            t.join()
        self.refs.update((ref, self.auth) for ref in posted)
        if errors:
            raise RuntimeError(f"{len(errors)} creates refused, e.g. {errors[0]}")
        for ref, t in posted.items():
            t["seen_active"] = seen[ref]
        return posted

    # -- 2. where the time goes ----------------------------------------------------------------
    def timelines(self, posted: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
        """Per project, from the stores: when each thing happened (epoch seconds)."""
        from services.projects.application import ProjectsApplication
        from services.projects.domain import Project
        from services.provisioner.application import ProvisionerApplication
        from services.shared.eventstore import open_application

        projects = open_application(ProjectsApplication, self.s, pool_size=1, max_overflow=0)
        provisioner = open_application(ProvisionerApplication, self.s, pool_size=1, max_overflow=0)
        out: dict[str, dict[str, Any]] = {}
        try:
            for ref, t in posted.items():
                pid = Project.create_id(ref=ref)
                events = list(projects.repository.event_store.get(pid))
                project: Project = projects.repository.get(pid)
                line: dict[str, Any] = dict(t)
                line["recorded"] = ts(events[0].timestamp)
                line["progress_events"] = sum(1 for e in events if type(e).__name__ == "StepReported")
                done = [e for e in events if type(e).__name__ == "OperationCompleted"]
                line["active_recorded"] = ts(done[0].timestamp) if done else None
                saga = provisioner.saga_history(project.operation_id)
                line["saga_opened"] = ts(datetime.fromisoformat(saga[0]["at"]))
                steps: dict[str, float] = {}
                started: dict[str, float] = {}
                for e in saga:
                    at = ts(datetime.fromisoformat(e["at"]))
                    if e["event"] == "StepStarted":
                        started[e["step"]] = at
                    elif e["event"] == "StepCompleted":
                        steps[e["step"]] = at - started[e["step"]]
                    elif e["event"] == "Succeeded":
                        line["saga_done"] = at
                    elif e["event"] == "StepAttemptFailed":
                        line.setdefault("failed_attempts", []).append(f"{e['step']}: {e['error']}")
                line["first_step"] = min(started.values()) if started else None
                line["steps"] = steps
                out[ref] = line
        finally:
            projects.close()
            provisioner.close()
        return out

    # -- 3. pause -> restore -------------------------------------------------------------------
    def pause_restore(self, ref: str, mb: int) -> dict[str, float]:
        db_mb = fill(self.s, ref, mb)
        rows = self.row_count(ref)
        t0 = time.time()
        self.http.post(f"{self.base}/v1/projects/{ref}/pause", headers=self.refs[ref], timeout=30).raise_for_status()
        paused = self.wait_status(ref, "INACTIVE")
        t1 = time.time()
        self.http.post(f"{self.base}/v1/projects/{ref}/restore", headers=self.refs[ref],
                       timeout=30).raise_for_status()
        restored = self.wait_status(ref, "ACTIVE_HEALTHY")
        after = self.row_count(ref)
        if after != rows:
            raise RuntimeError(f"{ref}: {rows} rows before the pause, {after} after the restore")
        return {"db_mb": db_mb, "rows": rows, "pause_ms": (paused - t0) * 1000, "restore_ms": (restored - t1) * 1000}

    def row_count(self, ref: str) -> int:
        with psycopg.connect(host=self.s.tenant_db_host, port=self.s.tenant_db_port, dbname=ref,
                             user=f"postgres.{ref}", password=PASSWORD, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    # -- cleanup -------------------------------------------------------------------------------
    def delete_projects(self, refs: list[str] | None = None, timeout: float = 60) -> None:
        """Delete through the gateway and wait until each is REMOVED (or gone)."""
        refs = list(self.refs if refs is None else refs)
        for ref in refs:
            try:
                self.http.delete(f"{self.base}/v1/projects/{ref}", headers=self.refs[ref], timeout=30)
            except requests.RequestException:
                pass
        deadline = time.monotonic() + timeout
        pending = set(refs)
        while pending and time.monotonic() < deadline:
            for ref in list(pending):
                try:
                    r = self.http.get(f"{self.base}/v1/projects/{ref}", headers=self.refs[ref], timeout=30)
                    if r.status_code == 404 or r.json().get("status") == "REMOVED":
                        pending.discard(ref)
                except requests.RequestException:
                    pass
            time.sleep(0.3)

    def drop_leftovers(self) -> None:
        """Tenants are cluster-wide: drop whatever this run's provisioner touched and the
        delete did not remove, and spare databases beyond what the cluster had before."""
        refs = set(self.refs)
        try:
            with psycopg.connect(self.s.db_conninfo, autocommit=True) as conn:
                if conn.execute("SELECT to_regclass('provisioner.sagas')").fetchone()[0]:
                    refs |= {r[0] for r in conn.execute("SELECT DISTINCT ref FROM provisioner.sagas").fetchall()}
        except psycopg.Error:
            pass
        with psycopg.connect(self.s.conninfo_for("postgres"), autocommit=True) as conn:
            for ref in sorted(refs):
                for db in (ref, f"{ref}_restoring"):
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
                for role in (f"postgres.{ref}", f"authenticator.{ref}", ref):
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            extra = len(self.spare_names()) - max(len(self.spares_before), 2)
            if extra > 0:
                # Under the builders' lock, so no spare is dropped mid-build; a create
                # renaming one at the same time simply wins or moves on to the next.
                conn.execute("SELECT pg_advisory_lock(hashtext('supaplatform:spares'))")
                try:
                    for name in self.spare_names(ready_only=True)[:extra]:
                        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                finally:
                    conn.execute("SELECT pg_advisory_unlock(hashtext('supaplatform:spares'))")

    def cleanup(self) -> None:
        self.drop_leftovers()


def print_timelines(lines: dict[str, dict[str, Any]]) -> None:
    """One line per project, in POST order: ms after the first POST when each thing happened."""
    first = min(x["post"] for x in lines.values())
    keys = ["answered", "recorded", "saga_opened", "first_step", "saga_done", "active_recorded", "seen_active"]
    print("  per project, ms after the first POST: " + " ".join(keys), flush=True)
    for ref, x in sorted(lines.items(), key=lambda kv: kv[1]["saga_opened"]):
        print(f"    {ref} " + " ".join(f"{(x[k] - first) * 1000:6.0f}" for k in keys)
              + "  " + " ".join(f"{s}={d * 1000:.0f}" for s, d in x["steps"].items()), flush=True)


def report(lines: dict[str, dict[str, Any]]) -> dict[str, float]:
    def ms(values: list[float]) -> str:
        values = [v * 1000 for v in values]
        return f"p50 {statistics.median(values):6.0f}  p95 {pct(values, 95):6.0f}  max {max(values):6.0f} ms"

    L = list(lines.values())
    phases = {
        "POST answered (gateway -> projects saved)": [x["answered"] - x["post"] for x in L],
        "POST -> project recorded": [x["recorded"] - x["post"] for x in L],
        "recorded -> saga opened (relay, broker, queue)": [x["saga_opened"] - x["recorded"] for x in L],
        "saga opened -> first step": [x["first_step"] - x["saga_opened"] for x in L],
        "first step -> saga succeeded": [x["saga_done"] - x["first_step"] for x in L],
        "saga succeeded -> ACTIVE_HEALTHY recorded": [x["active_recorded"] - x["saga_done"] for x in L],
        "ACTIVE_HEALTHY recorded -> seen by the client": [x["seen_active"] - x["active_recorded"] for x in L],
        "POST -> ACTIVE_HEALTHY recorded": [x["active_recorded"] - x["post"] for x in L],
        "POST -> ACTIVE_HEALTHY seen": [x["seen_active"] - x["post"] for x in L],
    }
    print("where the time goes, per project (wall clock; phases overlap across projects):", flush=True)
    for name, values in phases.items():
        print(f"  {name:<48} {ms(values)}", flush=True)
    steps: dict[str, list[float]] = defaultdict(list)
    for x in L:
        for step, d in x["steps"].items():
            steps[step].append(d)
    print("  saga steps (StepStarted -> StepCompleted, incl. the start's save):", flush=True)
    for step, values in steps.items():
        print(f"    {step:<46} {ms(values)}", flush=True)
    failed = [f for x in L for f in x.get("failed_attempts", [])]
    if failed:
        print(f"  failed step attempts: {len(failed)}, e.g. {failed[0]}", flush=True)
    print(f"  progress messages applied per project: {statistics.median([x['progress_events'] for x in L]):.0f}",
          flush=True)
    return {"recorded_p50": statistics.median(phases["POST -> ACTIVE_HEALTHY recorded"]) * 1000,
            "recorded_p95": pct(phases["POST -> ACTIVE_HEALTHY recorded"], 95) * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="bursts, one after another (projects deleted between)")
    ap.add_argument("--mb", type=int, default=100, help="size of the paused and restored project (0: skip)")
    ap.add_argument("--orgs", type=int, default=1, help="spread the creates over this many pro organizations")
    ap.add_argument("--spares", type=int, default=None,
                    help="PLATFORM_PROVISIONER_SPARE_DATABASES for this run (default: --projects, a pool sized "
                         "for the burst; 2 is the setting's default)")
    ap.add_argument("--poll-ms", type=int, default=100, help="how often the client lists its projects")
    ap.add_argument("--profile", type=Path, help="record py-spy profiles of the processes during the burst here")
    ap.add_argument("--perf", type=Path, help="record `perf record -a -g` of the whole machine during the burst here")
    ap.add_argument("--verbose", action="store_true", help="print every project's timeline")
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (path printed)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    settings = throwaway_settings(
        "provbench", workdir,
        provisioner_spare_databases=args.projects if args.spares is None else args.spares,
        # One bench user: real argon2id with cheaper parameters, as the tests use.
        password_hash_time_cost=1, password_hash_memory_kib=8192)
    bench = Bench(settings, workdir, settings.provisioner_spare_databases)
    print(f"load average before: {loadavg()} ({os.cpu_count()} cores)", flush=True)
    t_start = time.monotonic()
    try:
        bench.start()
        slugs = bench.setup_user(args.orgs)
        waited = bench.wait_spares()
        print(f"platform up in {time.monotonic() - t_start:.1f} s; {settings.provisioner_spare_databases} spare "
              f"databases ready after {waited:.1f} s more; {args.projects} creates over {len(slugs)} pro "
              f"organization(s)", flush=True)
        # One create first, on its own: the relay has started (the runner does not wait for
        # it), pools and caches are warm, as on a platform that has been running. This
        # project is the one paused and restored afterwards.
        lone_ms = []
        for name in ("warm-up", "alone"):
            bench.wait_spares()
            t0 = time.time()
            r = bench.http.post(bench.base + "/v1/projects", headers=bench.auth, timeout=60,
                                json={"name": name, "organization_slug": slugs[0], "db_pass": PASSWORD})
            r.raise_for_status()
            bench.refs[r.json()["ref"]] = bench.auth
            lone_ms.append((bench.wait_status(r.json()["ref"], "ACTIVE_HEALTHY", poll=0.01) - t0) * 1000)
            if name == "warm-up":
                warm_ref = r.json()["ref"]
        print(f"one create alone, POST -> ACTIVE_HEALTHY (polled every 10 ms): first after start {lone_ms[0]:.0f} ms, "
              f"next {lone_ms[1]:.0f} ms", flush=True)
        pids = {name: p.pid for name, p in bench.platform.procs.items()}
        cpu: dict[str, float] = defaultdict(float)
        lines: dict[str, dict[str, Any]] = {}
        round_p50 = []
        for rnd in range(1, args.rounds + 1):
            if rnd > 1:  # a new user and organization: the poller lists only this round's projects
                slugs = bench.setup_user(args.orgs)
            waited = bench.wait_spares()
            meter = CpuMeter(pids)
            meter.start()
            exited0 = postmaster_children_cpu()
            profilers = bench.profile(args.profile / f"round{rnd}") if args.profile else []
            if args.perf:  # every process on the machine, PostgreSQL's backends included
                profilers.append(subprocess.Popen(["perf", "record", "-a", "-g", "-q", "-o", f"{args.perf}.{rnd}"],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            posted = bench.burst(slugs, args.projects, args.poll_ms / 1000)
            used = meter.stop()
            for p in profilers:
                p.send_signal(signal.SIGINT)
            for p in profilers:
                p.wait(timeout=30)
            # Backends alive at the start and gone by the end move from one figure to the other.
            used["postgresql (all)"] += postmaster_children_cpu() - exited0
            for k, v in used.items():
                cpu[k] += v
            create = [(x["seen_active"] - x["post"]) * 1000 for x in posted.values()]
            round_p50.append(statistics.median(create))
            print(f"round {rnd}: {args.projects} creates at once (spares ready after {waited:.1f} s): "
                  f"p50 {statistics.median(create):.0f} ms, p95 {pct(create, 95):.0f} ms, max {max(create):.0f} ms; "
                  f"machine {used['machine busy'] / used['machine capacity']:.0%} busy; load {loadavg()}", flush=True)
            round_lines = bench.timelines(posted)
            if args.verbose:
                print_timelines(round_lines)
            lines.update(round_lines)
            if rnd < args.rounds:
                bench.delete_projects(list(posted))
        create = [(x["seen_active"] - x["post"]) * 1000 for x in lines.values()]
        print(f"creates, all rounds: p50 {statistics.median(create):.0f} ms, p95 {pct(create, 95):.0f} ms, max "
              f"{max(create):.0f} ms (POST -> ACTIVE_HEALTHY seen, listed every {args.poll_ms} ms)", flush=True)
        wall = cpu.pop("wall")
        busy, capacity = cpu.pop("machine busy"), cpu.pop("machine capacity")
        ours = sum(v for k, v in cpu.items())
        print(f"CPU during the bursts ({wall:.1f} s wall, {capacity / wall:.0f} cores): machine {busy / capacity:.0%} "
              "busy; " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
              + f"; everything else {max(busy - ours, 0):.1f} s", flush=True)
        recorded = report(lines)
        result: dict[str, Any] = {
            "create_p50_ms": round(statistics.median(create)), "create_p95_ms": round(pct(create, 95)),
            "create_max_ms": round(max(create)), "round_p50s_ms": "/".join(f"{x:.0f}" for x in round_p50),
            "single_create_ms": round(lone_ms[1]),
            "recorded_p50_ms": round(recorded["recorded_p50"]), "recorded_p95_ms": round(recorded["recorded_p95"]),
        }
        if args.mb > 0:
            bench.wait_spares()  # the refill after the bursts would otherwise compete with the dump
            pr = bench.pause_restore(warm_ref, args.mb)
            print(f"pause -> INACTIVE {pr['pause_ms']:.0f} ms, restore -> ACTIVE_HEALTHY {pr['restore_ms']:.0f} ms "
                  f"({pr['db_mb']:.0f} MB database, {pr['rows']} rows, all there after the restore)", flush=True)
            result.update(pause_ms=round(pr["pause_ms"]), restore_ms=round(pr["restore_ms"]),
                          restore_mb=round(pr["db_mb"]))
        result.update(projects=args.projects, rounds=args.rounds, orgs=len(slugs),
                      spares=settings.provisioner_spare_databases,
                      cpu_busy=f"{busy / capacity:.2f}", load=os.getloadavg()[0])
        met = [k for k, target in TARGETS.items() if k in result and result[k] <= target]
        result["targets_met"] = f"{len(met)}/{sum(1 for k in TARGETS if k in result)}"
    finally:
        try:
            bench.delete_projects()
        finally:
            bench.stop()
            if args.keep_logs:
                print(f"logs kept in {workdir / 'logs'}", flush=True)
                shutil.rmtree(workdir / "state", ignore_errors=True)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average after: {loadavg()}; bench took {time.monotonic() - t_start:.0f} s", flush=True)
    print("RESULT " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
