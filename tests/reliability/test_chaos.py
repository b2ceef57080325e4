"""Chaos: the whole platform under `platform-run`, on a PostgreSQL cluster and a RabbitMQ node
of its own, under a steady load of project creates and usage (project-scoped API requests).
Every platform process is killed with SIGKILL once (platform-run starts it again after its
backoff), then PostgreSQL is restarted, then RabbitMQ. Afterwards:

- every saga is terminal: each project the load asked for is ACTIVE_HEALTHY, or INIT_FAILED
  with a reason, and every saga row is succeeded or failed;
- no usage record is lost or doubled: what the gateways stored in their usage outbox equals
  what metering folded into its aggregates, request for request;
- nothing was dead-lettered (an outage is no message's fault);
- no process is orphaned: the processes carrying this platform's environment are exactly
  platform-run and the children it reports, and none is left once it stops.

The servers restarted are private (pg_cluster.py, broker_node.py), never the machine's.
Bounded (the load stops, then every wait is on a state with a deadline).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest
import requests

from services.shared import broker
from services.shared.eventstore import open_application
from services.shared.rabbitadmin import RabbitAdmin
from services.shared.runner import ROOT, child_env, state_path
from services.shared.settings import Settings
from tests.conftest import ARTIFACTS, make_test_settings
from tests.support import alive, descendants, wait_for

from .broker_node import SCRIPTS, BrokerNode
from .pg_cluster import BIN, PgCluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SCRIPTS is None or BIN is None, reason="RabbitMQ's or PostgreSQL's server binaries missing"),
]

TERMINAL = {"ACTIVE_HEALTHY", "INIT_FAILED"}
DB_PASS = "Chaos-tenant-pass-1"
ORGS = 8  # free plan: two projects each


def marked_processes(marker: str) -> set[int]:
    """Every live process whose environment carries this platform's marker (inherited by
    everything platform-run starts, and by what those start)."""
    needle = marker.encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and alive(int(entry.name)):
                found.add(int(entry.name))
        except OSError:
            pass
    return found


class Runner:
    """`platform-run` as the operator starts it, on the private servers."""

    def __init__(self, settings: Settings, log: Path):
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.shared.runner"], cwd=ROOT,
                                         env=child_env(self.settings), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(state_path(self.settings).read_text()).get("processes") or {})
        except (OSError, ValueError):
            return {}

    def all_running(self) -> dict[str, Any] | None:
        procs = self.state()
        ok = procs and all(p["state"] == "running" and alive(p["pid"]) for p in procs.values())
        return procs if ok else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def chaos_platform() -> Iterator[tuple[Runner, PgCluster, BrokerNode]]:
    base = make_test_settings("chaos")
    logs = ARTIFACTS / "logs" / base.db_name
    pg = PgCluster(logs / "postgresql")
    node = BrokerNode(logs / "rabbitmq", vhost=base.amqp_vhost, management=True)
    runner: Runner | None = None
    try:
        pg.start()
        node.start()
        s = base.with_overrides(
            **pg.settings_overrides(), **node.settings_overrides(),
            state_dir=str(ARTIFACTS / "state" / base.db_name),
            rpc_timeout_s=8.0, provisioner_spare_databases=1, consumer_max_attempts=5)
        runner = Runner(s, logs / "platform-run.log")
        runner.start()
        wait_for("platform-run to start every process", runner.all_running, timeout=180, interval=0.5)
        yield runner, pg, node
    finally:
        leftovers: set[int] = set()
        if runner is not None:
            leftovers = marked_processes(f"PLATFORM_DB_NAME={base.db_name}")
            runner.stop()
            for pid in leftovers:  # only if supervision failed: never leave them behind
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        try:
            node.stop()
        finally:
            pg.stop()


class Load:
    """Project creates (one at a time, into organizations with room) and project-scoped
    reads (usage), from threads, until stopped. Records what it asked for and got."""

    def __init__(self, url: str, token: str, orgs: list[str]):
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.room = Counter({slug: 2 for slug in orgs})
        self.refs: list[str] = []
        self.answers: Counter[int] = Counter()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._guard, args=(f,), daemon=True)
                        for f in (self.create_projects, self.read_projects, self.read_projects)]

    def check(self) -> None:
        assert not self.errors, f"the load failed: {self.errors!r}"

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 -- reported by stop()
            self.errors.append(e)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not self.errors, f"the load failed: {self.errors!r}"

    def _request(self, method: str, path: str, headers: dict[str, str] | None = None,
                 **kw: Any) -> requests.Response | None:
        try:
            r = requests.request(method, self.url + path, headers={**self.headers, **(headers or {})}, timeout=30,
                                 **kw)
        except requests.RequestException:
            with self.lock:
                self.answers[0] += 1
            return None
        with self.lock:
            self.answers[r.status_code] += 1
        return r

    def create_projects(self) -> None:
        while not self.stopping.is_set():
            slug = next((s for s, n in self.room.items() if n > 0), None)
            if slug is None:
                return
            key = uuid.uuid4().hex  # one create, however often it is retried
            while not self.stopping.is_set():
                r = self._request("POST", "/v1/projects", json={
                    "name": f"chaos {len(self.refs)}", "organization_slug": slug, "db_pass": DB_PASS,
                    "region": "eu-west-1"}, headers={"Idempotency-Key": key})
                if r is not None and r.status_code == 201:
                    with self.lock:
                        self.refs.append(r.json()["ref"])
                    self.room[slug] -= 1
                    break
                if r is not None and 400 <= r.status_code < 500:
                    raise AssertionError(f"project create refused: {r.status_code} {r.text}")
                self.stopping.wait(0.5)  # 503 or no answer: a dependency is down; retry the same key
            self.stopping.wait(1.0)  # pacing: a steady trickle of creates, not a burst

    def read_projects(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                refs = list(self.refs)
            for ref in refs[-4:]:
                self._request("GET", f"/v1/projects/{ref}")
            self.stopping.wait(0.05)  # pacing of the readers


def ctl(settings: Settings, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "services.shared.platformctl", *args], cwd=ROOT,
                          env=child_env(settings), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def outbox_usage(settings: Settings) -> Counter[tuple[str, str]]:
    """(project, metric) -> quantity, summed over every batch the gateways stored."""
    from gateway.usage_outbox import UsageOutbox

    app = open_application(UsageOutbox, settings, pool_size=1, max_overflow=0)
    try:
        totals: Counter[tuple[str, str]] = Counter()
        start = 1
        while True:
            page = list(app.recorder.select_notifications(start=start, limit=500))
            if not page:
                return totals
            for n in page:
                for rec in app.mapper.to_domain_event(n).records:
                    totals[(rec["project_ref"], rec["metric"])] += rec["quantity"]
            start = page[-1].id + 1
    finally:
        app.close()


def folded_usage(settings: Settings) -> Counter[tuple[str, str]]:
    with psycopg.connect(settings.db_conninfo) as db:
        rows = db.execute("SELECT project_ref, metric, sum(quantity) FROM metering.project_usage "
                          "WHERE granularity = 'hour' AND metric IN ('api_requests', 'egress_bytes') "
                          "GROUP BY 1, 2").fetchall()
    return Counter({(r[0], r[1]): int(r[2]) for r in rows})


def dead_letters(settings: Settings) -> dict[str, int]:
    return {q["name"]: int(q.get("messages") or 0) for q in RabbitAdmin(settings).queues()
            if q["name"].endswith(".dlq") and int(q.get("messages") or 0)}


@pytest.mark.timeout(420)
def test_chaos_kill_every_process_restart_postgres_and_rabbitmq(
        chaos_platform: tuple[Runner, PgCluster, BrokerNode]) -> None:
    runner, pg, node = chaos_platform
    s = runner.settings
    t0 = time.monotonic()
    url = f"http://{s.gateway_host}:{s.gateway_port}"
    email = f"chaos-{uuid.uuid4().hex[:8]}@example.com"
    ctl(s, "users", "create", "--email", email, "--password", "correct horse battery")
    token = ctl(s, "tokens", "create", "--email", email).strip()
    headers = {"Authorization": f"Bearer {token}"}
    orgs = []
    for i in range(ORGS):
        r = requests.post(url + "/v1/organizations", headers=headers, json={"name": f"Chaos {i}"}, timeout=30)
        assert r.status_code == 201, r.text
        orgs.append(r.json()["slug"])
    # billing gives each organization its free plan from organization_created
    wait_for("billing to know every organization",
             lambda: all(requests.get(f"{url}/v1/organizations/{o}", headers=headers, timeout=30)
                         .json().get("plan") for o in orgs), timeout=60, interval=0.3)

    load = Load(url, token, orgs)
    load.start()
    try:
        wait_for("a first project up", lambda: not load.check() and any(
            requests.get(f"{url}/v1/projects/{ref}", headers=headers, timeout=30).json().get("status")
            == "ACTIVE_HEALTHY" for ref in list(load.refs)), timeout=90, interval=0.3)

        # 1. kill -9 every platform process once, in three waves; platform-run starts each again.
        before = runner.state()
        assert len(before) >= 13, before
        names = list(before)
        for wave in (names[0::3], names[1::3], names[2::3]):
            for name in wave:
                os.kill(before[name]["pid"], signal.SIGKILL)
            for name in wave:
                wait_for(f"{name} to be restarted by platform-run",
                         lambda: (q := runner.state().get(name)) and q["pid"] != before[name]["pid"]
                         and q["state"] == "running" and alive(q["pid"]), timeout=60, interval=0.1)
        kills_done = time.monotonic()

        # 2. restart PostgreSQL (every session terminated; refused until it is back).
        pg.restart()
        # 3. restart RabbitMQ (every connection closed; durable queues and messages kept).
        node.ctl("stop_app")
        node.ctl("start_app")
        wait_for("RabbitMQ to answer again", node.answers, timeout=60, interval=0.2)
        outages_done = time.monotonic()

        # The load keeps running a little past the last outage: the platform serves again.
        served = sum(load.answers[c] for c in (200, 201))
        wait_for("requests served after the outages",
                 lambda: sum(load.answers[c] for c in (200, 201)) > served + 20, timeout=60, interval=0.2)
    finally:
        load.stop()
    assert load.refs, "no project was created"

    # Every saga terminal, each failure with a reason.
    def statuses() -> dict[str, dict[str, Any]] | None:
        got = {}
        for ref in load.refs:
            r = requests.get(f"{url}/v1/projects/{ref}", headers=headers, timeout=30)
            if r.status_code != 200 or r.json()["status"] not in TERMINAL:
                return None
            got[ref] = r.json()
        return got

    final = wait_for("every project's saga to end", statuses, timeout=120, interval=0.5)
    for ref, p in final.items():
        if p["status"] == "INIT_FAILED":
            detail = requests.get(f"{url}/platform/projects/{ref}", headers=headers, timeout=30).json()
            assert (detail.get("progress") or {}).get("reason"), f"{ref} failed without a reason: {detail}"
    with psycopg.connect(s.db_conninfo) as db:
        sagas = db.execute("SELECT ref, operation, status FROM provisioner.sagas").fetchall()
    assert sagas and all(st in ("succeeded", "failed") for _, _, st in sagas), sagas
    assert {r for r, _, _ in sagas} >= set(load.refs)

    # Usage: what the gateways stored is what metering folded, no record lost or doubled.
    def usage_settled() -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]] | None:
        stored, folded = outbox_usage(s), folded_usage(s)
        return (stored, folded) if stored and stored == folded else None

    try:
        stored, folded = wait_for("metering to fold every stored usage record", usage_settled, timeout=90,
                                  interval=0.5)
    except AssertionError:
        raise AssertionError(f"usage stored {outbox_usage(s)} != folded {folded_usage(s)}") from None
    requests_stored = sum(q for (_, metric), q in stored.items() if metric == "api_requests")
    assert 0 < requests_stored <= sum(load.answers.values()), (requests_stored, load.answers)

    assert not dead_letters(s), f"dead-lettered during the chaos: {dead_letters(s)}"

    # Exactly the platform's processes: platform-run and its children, nothing orphaned.
    assert runner.proc is not None
    marker = f"PLATFORM_DB_NAME={s.db_name}"
    procs = runner.all_running()
    assert procs is not None
    expected = {runner.proc.pid} | {p["pid"] for p in procs.values()}
    for p in procs.values():
        expected |= descendants(p["pid"])
    # Every process carrying the platform's environment is one of those (no orphan of a killed
    # process). Some descendants carry none of it, by design: tenant processes (postgres-meta,
    # PostgREST, function workers) start with a clean environment; they are in `expected`.
    orphans = marked_processes(marker) - expected
    assert not orphans, f"processes with the platform's environment outside platform-run's tree: {orphans}"
    runner.stop()
    wait_for("no platform process left after platform-run stopped",
             lambda: not marked_processes(marker) and not [pid for pid in expected if alive(pid)],
             timeout=15, interval=0.1)

    took = time.monotonic() - t0
    print(f"chaos: {len(load.refs)} projects ({Counter(p['status'] for p in final.values())}), "
          f"{requests_stored} requests metered, answers {dict(load.answers)}, kills {kills_done - t0:.0f}s, "
          f"outages {outages_done - kills_done:.0f}s, total {took:.0f}s")
