"""Benchmark: usage metering end to end, from the gateway's batches to exact aggregates.

The real pieces on a throwaway database and vhost: the gateway's usage meter (its counting
and batching code) saves batches to the gateway's usage outbox in this process; the outbox
relay (`python -m services.shared.relay gateway`) publishes them as `api_usage_recorded`
messages; metering's consumer (`python -m services.metering.consumer`) folds them into
hourly, daily, weekly and monthly aggregates per project and organization. Measures usage
records/s from the first count to the last record folded, then checks the totals are
exact three ways: the ledger holds every record once; each organization's totals equal what
the producer counted; every aggregate row equals a recomputation from the ledger. Finally
every batch is published again (the relay restarted from position 0) and the totals must
not move.

Run: .venv/bin/python bench/metering.py [--records 600000] [--projects 3000] [--batch 5000]
Last line: RESULT records_per_s=... exact=yes redelivered_exact=yes ...
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

from psycopg_pool import ConnectionPool  # noqa: E402

from bench.cpu import CpuMeter  # noqa: E402
from gateway.usage import UsageMeter  # noqa: E402
from gateway.usage_outbox import UsageOutbox  # noqa: E402
from services.metering.consumer import QUEUE, make_consumer  # noqa: E402
from services.metering.store import UsageStore  # noqa: E402
from services.shared import broker  # noqa: E402
from services.shared.db import connect, drop_database, ensure_database  # noqa: E402
from services.shared.eventstore import open_application  # noqa: E402
from services.shared.rabbitadmin import RabbitAdmin  # noqa: E402
from services.shared.runner import child_env  # noqa: E402
from services.shared.settings import Settings, load_settings  # noqa: E402

TARGET = 50_000
# The counted minutes start just before a new year: the aggregates cross hour, day, month
# and year boundaries during the run.
BASE = int(datetime(2024, 12, 31, 23, 30, tzinfo=timezone.utc).timestamp())


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


class Bench:
    def __init__(self, settings: Settings, workdir: Path):
        self.settings = settings
        self.workdir = workdir
        self.children: dict[str, Child] = {}
        self.outbox: UsageOutbox | None = None
        self.store: UsageStore | None = None
        self.db: Any = None
        self.admin = RabbitAdmin(settings)

    # -- processes ------------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str]) -> None:
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "ab")
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=child_env(self.settings), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.children[name] = Child(name, argv, proc, log_path, log)

    def stop(self, name: str) -> None:
        c = self.children.pop(name)
        if c.proc.poll() is None:
            os.killpg(c.proc.pid, signal.SIGTERM)
        try:
            c.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(c.proc.pid, signal.SIGKILL)
            c.proc.wait()
        c.log.close()

    def check_children(self) -> None:
        for c in self.children.values():
            if c.proc.poll() is not None:
                raise RuntimeError(f"{c.name} exited with {c.proc.returncode}:\n{c.log_path.read_text()[-3000:]}")

    # -- setup ------------------------------------------------------------------------------
    def start(self) -> None:
        ensure_database(self.settings)
        # The consumer's tables, queue and bindings first: nothing may be published before.
        consumer = make_consumer(self.settings)
        conn = broker.connect(self.settings)
        try:
            consumer.declare(conn.channel())
        finally:
            conn.close()
        self.db = connect(self.settings, autocommit=True)  # kept: the machine's connections are shared
        self.outbox = open_application(UsageOutbox, self.settings)
        pool = ConnectionPool(self.settings.db_conninfo, min_size=1, max_size=2, open=False,
                              kwargs={"autocommit": True})
        pool.open(wait=True, timeout=10)
        self.store = UsageStore(pool)
        self.spawn("consumer", ["-m", "services.metering.consumer"])
        self.spawn("relay", ["-m", "services.shared.relay", "gateway"])
        deadline = time.monotonic() + 30
        while ((self.admin.queue(QUEUE) or {}).get("consumers", 0)) < 1:
            self.check_children()
            if time.monotonic() > deadline:
                raise RuntimeError("the metering consumer did not start")
            time.sleep(0.1)
        # Warm-up: one small batch all the way through (also proves the pipe is connected).
        meter = UsageMeter(self.outbox)
        meter.add("warmup", "warmupaaaaaaaaaaaaaa", requests=1, egress=1, at=BASE - 86400 * 30)
        meter.flush()
        self.wait_folded(2, timeout=30)

    def folded(self) -> int:
        row = self.db.execute("SELECT coalesce(sum(record_count), 0) FROM metering.usage_ledger").fetchone()
        return int(row[0]) if row else 0

    def wait_folded(self, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            got = self.folded()
            if got >= n:
                return time.time()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {got}/{n} usage records folded after {timeout}s")
            self.check_children()
            time.sleep(0.005)

    # -- the run ------------------------------------------------------------------------------
    def produce(self, records: int, projects: int, orgs: int, batch: int) -> dict[str, Any]:
        """Count `records` usage records through the gateway's meter, flushing a batch to the
        outbox whenever `batch` records wait (as the gateway's flusher does when one fills).
        Returns what was counted, per organization and metric."""
        assert self.outbox is not None
        meter = UsageMeter(self.outbox, max_records=batch)
        refs = [f"{i:020d}".translate(str.maketrans("0123456789", "abcdefghij")) for i in range(projects)]
        org_of = [f"org-{i % orgs}" for i in range(projects)]
        expected: dict[tuple[str, str], int] = defaultdict(int)
        batches = 0
        for k in range(records // 2):  # each count is two records: requests and egress
            p, minute = k % projects, k // projects
            requests, egress = 1 + k % 7, (k * 7919) % 100_000 + 1
            org = org_of[p]
            meter.add(org, refs[p], requests=requests, egress=egress, at=BASE + minute * 60)
            expected[(org, "api_requests")] += requests
            expected[(org, "egress_bytes")] += egress
            if len(meter.pending) >= batch:
                meter.flush()
                batches += 1
        if meter.pending:
            meter.flush()
            batches += 1
        return {"expected": dict(expected), "batches": batches, "minutes": records // 2 // projects + 1,
                "records": meter.flushed_records}

    def run(self, records: int, projects: int, orgs: int, batch: int) -> dict[str, Any]:
        base = self.folded()
        meter = CpuMeter({**{c.name: c.proc.pid for c in self.children.values()}, "producer (bench)": os.getpid()})
        meter.start()
        t0 = time.time()
        produced = self.produce(records, projects, orgs, batch)
        t_produced = time.time()
        t_folded = self.wait_folded(base + produced["records"], timeout=600)
        cpu = meter.stop()
        return {**produced, "elapsed_s": t_folded - t0, "records_per_s": produced["records"] / (t_folded - t0),
                "produce_per_s": produced["records"] / (t_produced - t0), "drain_s": t_folded - t_produced,
                "cpu": cpu, "base": base}

    def exactness(self, expected: dict[tuple[str, str], int], total_records: int) -> list[str]:
        assert self.store is not None
        problems = []
        folded = self.folded()
        if folded != total_records:
            problems.append(f"ledger holds {folded} records, {total_records} were counted")
        start, end = BASE - 86400 * 40, BASE + 86400 * 60  # the warm-up and sentinel are a month early
        orgs = sorted({o for o, _ in expected})
        for org in orgs:
            got = self.store.totals(org, start - start % 3600, end - end % 3600)
            for metric in ("api_requests", "egress_bytes"):
                if got[metric] != expected[(org, metric)]:
                    problems.append(f"{org} {metric}: aggregates say {got[metric]}, the producer counted "
                                    f"{expected[(org, metric)]}")
        problems += self.store.verify()
        return problems

    def redeliver_everything(self) -> int:
        """Publish every batch again: stop the relay, rewind it to position 0, restart it.
        Returns how many messages it published again once a fresh sentinel batch is folded
        (the queue is FIFO with one consumer: everything before the sentinel was handled)."""
        assert self.outbox is not None
        self.stop("relay")
        top = self.outbox.recorder.max_notification_id() or 0
        self.db.execute("UPDATE gateway.relay_position SET position = 0")
        before = self.folded()
        self.spawn("relay", ["-m", "services.shared.relay", "gateway"])
        meter = UsageMeter(self.outbox)
        meter.add("sentinel", "sentinelaaaaaaaaaaaa", requests=1, egress=0, at=BASE - 86400 * 30)
        meter.flush()
        self.wait_folded(before + 1, timeout=300)
        return top

    def close(self) -> None:
        for name in list(self.children):
            self.stop(name)
        if self.outbox is not None:
            self.outbox.close()
        if self.store is not None:
            self.store.close()
        if self.db is not None:
            self.db.close()


def report_cpu(cpu: dict[str, float], records: int) -> None:
    ours = sum(used for name, used in cpu.items() if name not in ("wall", "machine busy", "machine capacity"))
    print(f"  CPU during it ({cpu['wall']:.1f}s wall; machine {cpu['machine busy'] / cpu['machine capacity']:.0%} busy"
          f" of {os.cpu_count()} cpus, other processes {(cpu['machine busy'] - ours) / cpu['wall']:.0%} of a cpu),"
          " per record:", flush=True)
    for name, used in cpu.items():
        if name not in ("wall", "machine busy", "machine capacity"):
            print(f"    {name:<18} {used / records * 1e6:6.2f} us/record  ({used / cpu['wall']:.0%} of a cpu)",
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000, help="usage records to count and fold")
    parser.add_argument("--projects", type=int, default=3000, help="projects the records are spread over")
    parser.add_argument("--orgs", type=int, default=300, help="organizations owning those projects")
    parser.add_argument("--batch", type=int, default=5000, help="records per gateway batch (usage_batch_max_records)")
    parser.add_argument("--keep", action="store_true", help="keep the database, vhost and logs")
    args = parser.parse_args(argv)

    started = time.monotonic()
    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)} on {os.cpu_count()} cpus", flush=True)
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-metering-"))
    settings = load_settings().with_overrides(db_name=f"sp_bench_{tag}", amqp_vhost=f"sp_bench_{tag}",
                                              state_dir=str(workdir / "state"))
    admin = RabbitAdmin(settings)
    admin.create_vhost(settings.amqp_vhost)
    bench = Bench(settings, workdir)
    try:
        bench.start()
        print(f"pipeline up in {time.monotonic() - started:.1f}s (db {settings.db_name}, logs {workdir})", flush=True)
        r = bench.run(args.records, args.projects, args.orgs, args.batch)
        print(f"throughput: {r['records']:,} usage records ({r['batches']} gateway batches of up to {args.batch}, "
              f"{args.projects} projects in {args.orgs} orgs over {r['minutes']} minutes) folded in "
              f"{r['elapsed_s']:.2f}s = {r['records_per_s']:,.0f} records/s end to end; the meter counted and "
              f"saved {r['produce_per_s']:,.0f}/s; last batch folded {r['drain_s'] * 1000:.0f} ms after the last save",
              flush=True)
        report_cpu(r["cpu"], r["records"])
        total = r["base"] + r["records"]
        expected = {**r["expected"], ("warmup", "api_requests"): 1, ("warmup", "egress_bytes"): 1}
        problems = bench.exactness(expected, total)
        print("exactness: " + ("every total exact (ledger count, per-org totals vs the producer's counts, every "
                               "aggregate row vs a recomputation from the ledger)" if not problems else
                               f"{len(problems)} problems: " + "; ".join(problems[:5])), flush=True)
        again = bench.redeliver_everything()
        expected.update({("sentinel", "api_requests"): 1, ("sentinel", "egress_bytes"): 0})
        problems_after = bench.exactness(expected, total + 1)
        print(f"redelivery: all {again} batches published again; "
              + ("totals unchanged" if not problems_after else "; ".join(problems_after[:5])), flush=True)
    finally:
        bench.close()
        if not args.keep:
            drop_database(settings)
            admin.delete_vhost(settings.amqp_vhost)
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}; total {time.monotonic() - started:.0f}s",
          flush=True)
    print(f"RESULT records_per_s={r['records_per_s']:.0f} records={r['records']} batches={r['batches']} "
          f"exact={'yes' if not problems else 'no'} redelivered_exact={'yes' if not problems_after else 'no'} "
          f"target={TARGET} load_before={load_before[0]:.2f}")
    return 0 if not problems and not problems_after else 1


if __name__ == "__main__":
    sys.exit(main())
