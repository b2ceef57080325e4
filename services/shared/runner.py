"""Starts the whole platform: every service process, the gateway and the outbox relay.

`platform-run` (what `make run` calls) prepares the database, starts the processes in
order (services first, so their queues exist before the relay publishes), prints what runs
where, and stops everything on Ctrl-C. Tests use the same `Platform` class.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests

from .db import bootstrap
from .rabbitadmin import RabbitAdmin
from .settings import SERVICES, Settings, load_settings, settings_env

ROOT = Path(__file__).resolve().parents[2]
NAMEKO_CONFIG = ROOT / "config" / "nameko.yaml"


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

    def start_process(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{spec.name}.log", "ab")
        self._logs.append(log)
        proc = subprocess.Popen(spec.argv, cwd=ROOT, env=child_env(self.settings), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[spec.name] = proc
        return proc

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

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        platform.start()
        print(platform.describe(), flush=True)
        print("platform running; Ctrl-C stops it", flush=True)
        while not stopping:
            for name, proc in platform.procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {platform.log_dir}/{name}.log", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        print("stopping…", flush=True)
        platform.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
