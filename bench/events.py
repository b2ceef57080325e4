"""Benchmark: the event backbone end to end, store -> relay -> RabbitMQ -> idempotent consumer.

Uses the real pieces on a throwaway database and vhost: the probe's event-sourced
application writes events (in this process), the outbox relay (`python -m
services.shared.relay probe`) publishes them, and the probe consumer (`python -m
services.shared.probe_consumer`) applies each once. Measures sustained events/s, latency
at a fixed offered load, and the ratio to the broker ceiling measured in the same run.

Run: .venv/bin/python bench/events.py [--events 30000] [--rate 500] [--seconds 10] [--profile DIR]
Last line: RESULT events_per_s=... p50_ms=... p99_ms=... ratio_to_ceiling=... ceiling_per_s=...
"""

from __future__ import annotations

import argparse
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# The bench process imports psycopg through eventsourcing; it runs no eventlet, but keep the
# same wait function every platform process uses.
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

from bench.broker import measure_ceiling  # noqa: E402
from bench.cpu import CpuMeter  # noqa: E402
from services.shared.db import connect, drop_database, ensure_database  # noqa: E402
from services.shared.eventstore import open_application  # noqa: E402
from services.shared.probe import ProbeApplication  # noqa: E402
from services.shared.probe_consumer import SCHEMA, make_consumer  # noqa: E402
from services.shared.rabbitadmin import RabbitAdmin  # noqa: E402
from services.shared.runner import child_env  # noqa: E402
from services.shared.settings import Settings, load_settings  # noqa: E402

QUEUE = "probe.sink"


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


class Bench:
    def __init__(self, settings: Settings, workdir: Path, profile_dir: Path | None):
        self.settings = settings
        self.workdir = workdir
        self.profile_dir = profile_dir
        self.children: list[Child] = []
        self.profilers: list[subprocess.Popen[bytes]] = []
        self.app: ProbeApplication | None = None
        self.cpu: dict[str, float] = {}
        self.latency_cpu: dict[str, float] = {}

    # -- processes ------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str]) -> Child:
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=child_env(self.settings),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        child = Child(name, proc, log_path, log)
        self.children.append(child)
        return child

    def check_children(self) -> None:
        for c in self.children:
            if c.proc.poll() is not None:
                raise RuntimeError(f"{c.name} exited with {c.proc.returncode}:\n{c.log_path.read_text()[-3000:]}")

    def start_profilers(self, tag: str) -> None:
        if not self.profile_dir:
            return
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        for c in self.children:
            out = self.profile_dir / f"{tag}-{c.name}.txt"
            self.profilers.append(subprocess.Popen(
                [py_spy, "record", "--pid", str(c.proc.pid), "--rate", "200", "--format", "raw", "--gil",
                 "--output", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop_profilers(self) -> None:
        for p in self.profilers:
            p.send_signal(signal.SIGINT)
        for p in self.profilers:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.profilers.clear()

    def stop_children(self) -> None:
        for c in self.children:
            if c.proc.poll() is None:
                os.killpg(c.proc.pid, signal.SIGTERM)
        for c in self.children:
            try:
                c.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
            c.log.close()

    # -- setup ------------------------------------------------------------------------------
    def start(self) -> None:
        ensure_database(self.settings)
        # Create the consumer's tables and queues up front, so no event is published before
        # its queue exists.
        consumer = make_consumer(self.settings, QUEUE)
        from services.shared import broker
        conn = broker.connect(self.settings)
        try:
            consumer.declare(conn.channel())
        finally:
            conn.close()
        self.app = open_application(ProbeApplication, self.settings)
        self.spawn("consumer", ["-m", "services.shared.probe_consumer", "--queue", QUEUE])
        self.spawn("relay", ["-m", "services.shared.relay", "probe"])
        # Ready when a warm-up batch has gone all the way through.
        run = self.new_run()
        self.app.record_batch(run, list(range(100)))
        self.wait_applied(run, 100, timeout=30)

    @staticmethod
    def new_run() -> str:
        return uuid.uuid4().hex

    def applied(self, db: Any, run: str) -> tuple[int, int]:
        row = db.execute(f"SELECT count(*), coalesce(max(applied), 0) FROM {SCHEMA}.probe_effects "
                         "WHERE run_id = %s", (run,)).fetchone()
        return int(row[0]), int(row[1])

    def wait_applied(self, run: str, n: int, timeout: float) -> float:
        """Wait until `n` effects of `run` are applied; returns the time it happened."""
        deadline = time.monotonic() + timeout
        with connect(self.settings, autocommit=True) as db:
            while True:
                count, most = self.applied(db, run)
                if count >= n:
                    if most != 1 or count != n:
                        raise RuntimeError(f"not exactly once: {count} effects for {n} events, max applied {most}")
                    return time.time()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {count}/{n} events applied after {timeout}s")
                self.check_children()
                time.sleep(0.01)

    # -- (a) sustained throughput --------------------------------------------------------------
    def throughput(self, events: int, batch: int, writers: int) -> dict[str, float]:
        assert self.app is not None
        run = self.new_run()
        per_writer = events // writers
        events = per_writer * writers
        write_done: list[float] = []
        errors: list[BaseException] = []

        def write(w: int) -> None:
            try:
                base = w * per_writer
                for i in range(base, base + per_writer, batch):
                    self.app.record_batch(run, list(range(i, min(i + batch, base + per_writer))))  # type: ignore[union-attr]
                write_done.append(time.time())
            except BaseException as exc:  # noqa: BLE001 -- reported below
                errors.append(exc)

        self.start_profilers("throughput")
        meter = CpuMeter({**{c.name: c.proc.pid for c in self.children}, "producer (bench)": os.getpid()})
        meter.start()
        t0 = time.time()
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        t_written = max(write_done)
        t_applied = self.wait_applied(run, events, timeout=120)
        self.cpu = meter.stop()
        self.stop_profilers()
        elapsed = t_applied - t0
        return {
            "events": events,
            "elapsed_s": elapsed,
            "events_per_s": events / elapsed,
            "write_per_s": events / (t_written - t0),
            "drain_after_write_s": t_applied - t_written,
        }

    # -- (b) latency at a fixed offered load ----------------------------------------------------
    def latency(self, rate: float, seconds: float, writers: int = 4) -> dict[str, float]:
        """One event per save (one command each) on an open-loop schedule: each event is
        stamped with its scheduled time and handed to a pool of writers, so a slow save
        delays nothing after it and any lag counts as latency, not as a lower rate."""
        assert self.app is not None
        run = self.new_run()
        n = int(rate * seconds)
        todo: queue.Queue[tuple[int, float] | None] = queue.Queue()
        errors: list[BaseException] = []

        def write() -> None:
            while (item := todo.get()) is not None:
                try:
                    self.app.record_batch(run, [item[0]], sent_at=item[1])  # type: ignore[union-attr]
                except BaseException as exc:  # noqa: BLE001 -- reported below
                    errors.append(exc)

        threads = [threading.Thread(target=write, daemon=True) for _ in range(writers)]
        for t in threads:
            t.start()
        self.start_profilers("latency")
        meter = CpuMeter({**{c.name: c.proc.pid for c in self.children}, "producer (bench)": os.getpid()})
        meter.start()
        t0, wall0 = time.monotonic(), time.time()
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            todo.put((i, wall0 + i / rate))
        for _ in threads:
            todo.put(None)
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.wait_applied(run, n, timeout=60)
        self.latency_cpu = meter.stop()
        self.stop_profilers()
        with connect(self.settings, autocommit=True) as db:
            lat = [r[0] * 1000 for r in db.execute(
                f"SELECT received_at - sent_at FROM {SCHEMA}.probe_effects WHERE run_id = %s ORDER BY 1",
                (run,)).fetchall()]

        def pct(p: float) -> float:
            return lat[min(int(p / 100 * len(lat)), len(lat) - 1)]

        return {"events": n, "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": lat[-1]}


def report_cpu(cpu: dict[str, float], events: int) -> None:
    ours = sum(used for name, used in cpu.items() if name not in ("wall", "machine busy", "machine capacity"))
    print(f"  CPU during it ({cpu['wall']:.1f}s wall; machine {cpu['machine busy'] / cpu['machine capacity']:.0%} busy"
          f" of {os.cpu_count()} cpus, of which other processes {max(cpu['machine busy'] - ours, 0.0) / cpu['wall']:.0%}"
          " of a cpu), per event:", flush=True)
    for name, used in cpu.items():
        if name not in ("wall", "machine busy", "machine capacity"):
            print(f"    {name:<18} {used / events * 1e6:7.0f} us/event  ({used / cpu['wall']:.0%} of a cpu)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000, help="events for the throughput phase")
    parser.add_argument("--batch", type=int, default=100, help="events per save in the throughput phase")
    parser.add_argument("--writers", type=int, default=2, help="producer threads in the throughput phase")
    parser.add_argument("--rate", type=float, default=500, help="offered events/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=10, help="length of the latency phase")
    parser.add_argument("--ceiling-messages", type=int, default=30_000)
    parser.add_argument("--profile", type=Path, help="record py-spy profiles of relay and consumer here")
    parser.add_argument("--keep", action="store_true", help="keep the database, vhost and logs")
    args = parser.parse_args(argv)

    started = time.monotonic()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus", flush=True)
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    settings = load_settings().with_overrides(db_name=f"sp_bench_{tag}", amqp_vhost=f"sp_bench_{tag}")

    ceiling = measure_ceiling(settings, messages=args.ceiling_messages)
    print(f"broker ceiling: publish+confirm {ceiling.publish_confirmed_per_s:,.0f}/s, "
          f"consume+ack {ceiling.consume_per_s:,.0f}/s", flush=True)

    admin = RabbitAdmin(settings)
    admin.create_vhost(settings.amqp_vhost)
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-"))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    bench = Bench(settings, workdir, args.profile)
    try:
        bench.start()
        print(f"pipeline up in {time.monotonic() - started:.1f}s (db {settings.db_name}, logs {workdir})", flush=True)
        tp = bench.throughput(args.events, args.batch, args.writers)
        print(f"throughput: {tp['events']} events ({args.batch}/save, {args.writers} writers) applied in "
              f"{tp['elapsed_s']:.2f}s = {tp['events_per_s']:,.0f}/s end to end; producer wrote "
              f"{tp['write_per_s']:,.0f}/s; last applied {tp['drain_after_write_s'] * 1000:.0f} ms after last write",
              flush=True)
        report_cpu(bench.cpu, tp["events"])
        lat = bench.latency(args.rate, args.seconds)
        print(f"latency at {args.rate:.0f}/s offered (1 event/save, {lat['events']} events, scheduled time -> "
              f"effect applied): p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
              f"max {lat['max_ms']:.1f} ms", flush=True)
        report_cpu(bench.latency_cpu, lat["events"])
    finally:
        bench.stop_profilers()
        bench.stop_children()
        if bench.app is not None:
            bench.app.close()
        if not args.keep:
            drop_database(settings)
            admin.delete_vhost(settings.amqp_vhost)
            shutil.rmtree(workdir, ignore_errors=True)
    ratio = tp["events_per_s"] / ceiling.publish_confirmed_per_s
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; total {time.monotonic() - started:.0f}s",
          flush=True)
    print(f"RESULT events_per_s={tp['events_per_s']:.0f} p50_ms={lat['p50_ms']:.1f} p99_ms={lat['p99_ms']:.1f} "
          f"ratio_to_ceiling={ratio:.2f} ceiling_per_s={ceiling.publish_confirmed_per_s:.0f}")


if __name__ == "__main__":
    main()
