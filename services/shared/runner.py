"""Starts the whole platform: every service process, the gateway and the outbox relay.

`platform-run` (what `make run` calls) prepares the database, starts the processes in
order (services first, so their queues exist before the relay publishes), prints what runs
where, and stops everything on Ctrl-C. Tests use the same `Platform` class.

Supervision: every child dies with `platform-run`, even when it is killed with SIGKILL
(`procs.die_with_parent`, PR_SET_PDEATHSIG). A child that exits while the platform runs is
started again after a backoff (1 s doubling to 30 s while it keeps dying young), and the
supervisor's view (pids, restarts, last exit) is written to `<state_dir>/run/platform.json`,
which `platformctl status` reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests

from . import procs
from .db import bootstrap
from .rabbitadmin import RabbitAdmin
from .settings import SERVICES, Settings, load_settings, settings_env

ROOT = Path(__file__).resolve().parents[2]
NAMEKO_CONFIG = ROOT / "config" / "nameko.yaml"

RESTART_BACKOFF_S = 1.0  # first restart after this; doubles while a process keeps dying young
RESTART_BACKOFF_MAX_S = 30.0
HEALTHY_RUN_S = 30.0  # a process that ran this long before exiting starts again at the first backoff


def state_path(settings: Settings) -> Path:
    """Where platform-run writes its supervisor's view (read by `platformctl status`)."""
    return ROOT / settings.state_dir / "run" / "platform.json"


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    rpc_queue: str | None = None  # ready when this queue has a consumer
    http_port: int | None = None  # ready when this port answers
    http_host: str | None = None  # where to ask (default: the gateway's host)


def process_specs(settings: Settings) -> list[ProcessSpec]:
    nameko = [sys.executable, "-m", "nameko", "run", "--config", str(NAMEKO_CONFIG)]
    specs = [ProcessSpec(s, [*nameko, f"services.{s}.service"], rpc_queue=f"rpc-{s}") for s in SERVICES]
    specs.append(ProcessSpec("gateway", [*nameko, "gateway.service"], http_port=settings.gateway_port))
    # Runs edge functions in sandboxed Deno workers; the project edge forwards invocations to it.
    specs.append(ProcessSpec("functions-runtime", [sys.executable, "-m", "services.functions.runtime"],
                             http_port=settings.functions_runtime_port, http_host=settings.functions_runtime_host))
    # The realtime server (Phoenix channels of every project); the project edge forwards to it.
    specs.append(ProcessSpec("realtime-server", [sys.executable, "-m", "services.realtime.server"],
                             http_port=settings.realtime_port, http_host=settings.realtime_host))
    # The project edge: every project's API URL, an origin apart from the dashboard's.
    specs.append(ProcessSpec("edge", [sys.executable, "-m", "gateway.edge"], http_port=settings.edge_port,
                             http_host=settings.edge_host))
    # Folds usage messages (gateway batches, function invocations) into metering's aggregates;
    # ready once it consumes its queue, so the relay never publishes usage before it is bound.
    specs.append(ProcessSpec("metering-usage", [sys.executable, "-m", "services.metering.consumer"],
                             rpc_queue="metering.usage"))
    specs.append(ProcessSpec("relay", [sys.executable, "-m", "services.shared.relay"]))
    return specs


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env(settings))
    env["NAMEKO_AMQP_URI"] = settings.amqp_uri
    env["NAMEKO_WEB_SERVER_ADDRESS"] = f"{settings.gateway_host}:{settings.gateway_port}"
    env["PSYCOPG_WAIT_FUNC"] = "wait_select"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Platform:
    def __init__(self, settings: Settings, *, log_dir: Path | None = None, only: list[str] | None = None):
        self.settings = settings
        self.log_dir = log_dir or (ROOT / settings.state_dir / "log")
        self.specs = [p for p in process_specs(settings) if only is None or p.name in only]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._pid = procs.prepare()
        self.stopping = False
        # supervision: per process, when it started, restarts so far, its last exit, and
        # (while it is down) when it starts again and the backoff that came before
        self.started_at: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        self.last_exit: dict[str, dict[str, object]] = {}
        self.next_start: dict[str, float] = {}
        self.backoff: dict[str, float] = {}

    def start_process(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{spec.name}.log", "ab")
        self._logs.append(log)
        proc = subprocess.Popen(spec.argv, cwd=ROOT, env=child_env(self.settings), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=procs.preexec(self._pid))
        self.procs[spec.name] = proc
        self.started_at[spec.name] = time.monotonic()
        return proc

    # -- supervision -------------------------------------------------------------------------
    def supervise(self, now: float | None = None) -> list[str]:
        """One round: note processes that exited, start those whose backoff is over. Returns
        lines to print. Call it from the thread that started the processes (see procs)."""
        now = time.monotonic() if now is None else now
        said: list[str] = []
        if self.stopping:
            return said
        for spec in self.specs:
            proc = self.procs.get(spec.name)
            if proc is None:
                continue
            if spec.name in self.next_start:
                if now >= self.next_start[spec.name]:
                    del self.next_start[spec.name]
                    self.restarts[spec.name] = self.restarts.get(spec.name, 0) + 1
                    new = self.start_process(spec)
                    said.append(f"{spec.name} restarted (pid {new.pid}, restart {self.restarts[spec.name]})")
                continue
            code = proc.poll()
            if code is None:
                continue
            ran = now - self.started_at.get(spec.name, now)
            previous = self.backoff.get(spec.name, 0.0)
            delay = RESTART_BACKOFF_S if ran >= HEALTHY_RUN_S or not previous else min(previous * 2, RESTART_BACKOFF_MAX_S)
            self.backoff[spec.name] = delay
            self.next_start[spec.name] = now + delay
            self.last_exit[spec.name] = {"code": code, "at": time.time(), "ran_s": round(ran, 1)}
            said.append(f"{spec.name} exited with {code} after {ran:.1f}s; restarting in {delay:g}s "
                        f"(see {self.log_dir}/{spec.name}.log)")
        if said:
            self.write_state()
        return said

    def state(self) -> dict[str, object]:
        now = time.monotonic()
        processes = {}
        for spec in self.specs:
            proc = self.procs.get(spec.name)
            if proc is None:
                continue
            waiting = spec.name in self.next_start
            processes[spec.name] = {
                "pid": proc.pid,
                "state": "stopped" if self.stopping else "restarting" if waiting
                else "running" if proc.poll() is None else "exited",
                "restarts": self.restarts.get(spec.name, 0),
                "last_exit": self.last_exit.get(spec.name),
                "restart_in_s": round(max(self.next_start[spec.name] - now, 0), 1) if waiting else None,
            }
        return {"runner_pid": self._pid, "updated_at": time.time(), "processes": processes}

    def write_state(self) -> None:
        path = state_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state(), indent=1))
        tmp.replace(path)

    def start(self, timeout: float = 60.0) -> None:
        bootstrap(self.settings)
        # The platform's own migrations, before any process of this release starts.
        from .migrations import migrate

        migrate(self.settings)
        admin = RabbitAdmin(self.settings)
        relay = [s for s in self.specs if s.name == "relay"]
        for spec in [s for s in self.specs if s.name != "relay"]:
            self.start_process(spec)
        for spec in [s for s in self.specs if s.name != "relay"]:
            self.wait_ready(spec, admin, timeout)
        for spec in relay:
            self.start_process(spec)

    def wait_ready(self, spec: ProcessSpec, admin: RabbitAdmin, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[spec.name]
            if proc.poll() is not None:
                raise RuntimeError(f"{spec.name} exited with {proc.returncode}; see {self.log_dir}/{spec.name}.log")
            try:
                if spec.rpc_queue:
                    q = admin.queue(spec.rpc_queue)
                    if q and q.get("consumers", 0) > 0:
                        return
                elif spec.http_port:
                    requests.get(f"http://{spec.http_host or self.settings.gateway_host}:{spec.http_port}/health",
                                 timeout=1)
                    return
                else:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{spec.name} not ready after {timeout}s; see {self.log_dir}/{spec.name}.log")

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        self.next_start.clear()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def describe(self) -> str:
        lines = [f"{'process':<12} {'pid':>7}  where"]
        for spec in self.specs:
            proc = self.procs.get(spec.name)
            where = (f"http://{spec.http_host or self.settings.gateway_host}:{spec.http_port}" if spec.http_port
                     else f"rpc queue {spec.rpc_queue}" if spec.rpc_queue else "outbox -> RabbitMQ")
            lines.append(f"{spec.name:<12} {proc.pid if proc else '-':>7}  {where}")
        lines.append(f"logs: {self.log_dir}")
        return "\n".join(lines)


def main() -> None:
    from .credentials import CredentialsError, ensure

    try:
        settings = ensure(load_settings())  # first start: create the platform's role and broker user
    except CredentialsError as exc:
        raise SystemExit(f"platform-run: {exc}")
    platform = Platform(settings)
    stopping = False
    path = state_path(settings)

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        platform.start()
        platform.write_state()
        print(platform.describe(), flush=True)
        print("platform running; Ctrl-C stops it", flush=True)
        while not stopping:
            for line in platform.supervise():
                print(line, flush=True)
            time.sleep(0.2)
    finally:
        print("stopping…", flush=True)
        platform.stop()
        with contextlib.suppress(OSError):
            path.unlink()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
