"""Warm Deno workers: one process per (function version, environment), serving HTTP on its
own Unix socket, reused across invocations, stopped when idle, superseded by a redeploy or
a secret change, killed when it breaks a limit.

Limits: V8 heap (`--max-old-space-size`), the process's data segment (RLIMIT_DATA, which
also caps ArrayBuffers outside the heap), a resident-memory watchdog, and the invocation's
wall clock (enforced by the server). Permissions: network (minus the platform's own
infrastructure ports), env limited to the worker's variables, read of its own code and
socket only, nothing else (no write, run, ffi, sys).

asyncio only; imports the standard library, aiohttp and deno (the binary's path).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import resource
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp

log = logging.getLogger("functions.workers")

BOOTSTRAP = Path(__file__).with_name("bootstrap.ts")
RS = "\x1e"
BOOT_TIMEOUT_S = 20.0
MAX_LINE = 64 * 1024


def deno_binary() -> str:
    """The Deno binary the `deno` package installs into this environment."""
    from deno import find_deno_bin

    return str(find_deno_bin())


@dataclass(frozen=True)
class WorkerSpec:
    """Everything that decides what a worker runs; two invocations with equal specs share one."""

    ref: str
    slug: str
    version: int
    code_dir: Path
    entrypoint_path: str
    import_map_path: str | None
    env: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        env_digest = hashlib.sha256(json.dumps(self.env).encode()).hexdigest()[:16]
        return f"{self.ref}.{self.slug}.v{self.version}.{env_digest}"

    @property
    def function(self) -> tuple[str, str]:
        return (self.ref, self.slug)


class WorkerFailed(Exception):
    """A worker could not answer. `code` says why (BOOT_ERROR, WORKER_LIMIT, WORKER_ERROR,
    WORKER_TIMEOUT); the server turns it into a 5xx with that code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


LogSink = Callable[[str, str, str, int, str | None, str], None]  # ref, slug, level, version, request_id, message


@dataclass
class Worker:
    spec: WorkerSpec
    socket_path: Path
    proc: asyncio.subprocess.Process | None = None
    session: aiohttp.ClientSession | None = None
    ready: asyncio.Future[None] | None = None
    inflight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    stopping: bool = False
    killed_for: str | None = None  # WORKER_LIMIT / WORKER_TIMEOUT when the runtime killed it
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self.stopping

    def failure(self) -> WorkerFailed:
        """Why this worker cannot answer, from what we know of its end."""
        tail = "\n".join(self.stderr_tail)
        if self.killed_for == "WORKER_LIMIT" or "out of memory" in tail.lower() or "heap limit" in tail.lower():
            return WorkerFailed("WORKER_LIMIT", "The function exceeded its memory limit and was stopped")
        if self.killed_for == "WORKER_TIMEOUT":
            return WorkerFailed("WORKER_TIMEOUT", "The function exceeded its wall clock limit and was stopped")
        return WorkerFailed("WORKER_ERROR", "The function's worker stopped unexpectedly; see its logs")


class WorkerPool:
    def __init__(self, *, deno: str, socket_dir: Path, deno_dir: Path, memory_mb: int, idle_s: float,
                 max_workers: int, deny_net: list[str], sink: LogSink):
        self.deno = deno
        self.socket_dir = socket_dir
        self.deno_dir = deno_dir
        self.memory_mb = memory_mb
        self.idle_s = idle_s
        self.max_workers = max_workers
        self.deny_net = deny_net
        self.sink = sink
        self.workers: dict[str, Worker] = {}
        self._seq = 0
        self._reaper: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self.started = 0  # workers started since boot (the bench reports cold starts)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.deno_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.socket_dir.glob("*.sock"):
            stale.unlink(missing_ok=True)
        self._reaper = asyncio.create_task(self._reap_forever())
        self._warming = asyncio.create_task(self._warm_cache())

    async def _warm_cache(self) -> None:
        """Boot one throwaway worker so the first real cold start finds Deno's cache full."""
        spec = WorkerSpec(ref="_warmup", slug="_warmup", version=0, code_dir=BOOTSTRAP.parent,
                          entrypoint_path="warmup.ts", import_map_path=None, env=())
        w = Worker(spec=spec, socket_path=self.socket_dir / f"{os.getpid()}-warmup.sock")
        w.ready = asyncio.get_running_loop().create_future()
        try:
            await self._boot(w)
            await asyncio.wait_for(asyncio.shield(w.ready), BOOT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 -- only an optimisation
            log.warning("warming Deno's cache failed: %s", exc)
        finally:
            await self.stop(w, "warmed")

    async def close(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        if self._warming:
            self._warming.cancel()
        await asyncio.gather(*(self.stop(w, "shutdown") for w in list(self.workers.values())),
                             return_exceptions=True)

    async def acquire(self, spec: WorkerSpec) -> Worker:
        """A ready worker for `spec`, starting one if needed (concurrent callers share the start)."""
        w = self.workers.get(spec.key)
        if w is None or not w.alive:
            if w is not None:
                self.workers.pop(spec.key, None)
            w = self._spawn(spec)
        assert w.ready is not None
        await asyncio.shield(w.ready)
        w.last_used = time.monotonic()
        return w

    def _spawn(self, spec: WorkerSpec) -> Worker:
        self._seq += 1
        w = Worker(spec=spec, socket_path=self.socket_dir / f"{os.getpid()}-{self._seq}.sock")
        w.ready = asyncio.get_running_loop().create_future()
        self.workers[spec.key] = w
        # Older workers of the same function (a previous version or environment) are
        # superseded: they finish what they are doing and stop.
        for other in list(self.workers.values()):
            if other is not w and other.spec.function == spec.function:
                asyncio.create_task(self.retire(other))
        asyncio.create_task(self._boot(w))
        self._evict_if_full()
        return w

    def argv(self, w: Worker) -> list[str]:
        spec = w.spec
        names = ",".join(sorted(k for k, _ in spec.env)) or "NO_ENV"
        argv = [self.deno, "run", "--no-prompt", "--quiet", "--no-lock",
                f"--v8-flags=--max-old-space-size={self.memory_mb}",
                "--allow-net",
                f"--allow-env={names}",
                f"--allow-read={spec.code_dir},{w.socket_path}",
                f"--allow-write={w.socket_path}"]
        if self.deny_net:
            argv.append("--deny-net=" + ",".join(self.deny_net))
        if spec.import_map_path:
            argv.append(f"--import-map={spec.code_dir / spec.import_map_path}")
        else:
            argv.append("--no-config")
        entry = (spec.code_dir / spec.entrypoint_path).resolve().as_uri()
        return [*argv, str(BOOTSTRAP), str(w.socket_path), entry, ",".join(sorted(k for k, _ in spec.env))]

    def _limits(self) -> None:  # runs in the child before exec
        os.setsid()
        data = (self.memory_mb * 2 + 768) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    async def _boot(self, w: Worker) -> None:
        assert w.ready is not None
        env = {"DENO_DIR": str(self.deno_dir), "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1",
               "HOME": str(self.deno_dir), "PATH": "/usr/bin:/bin", **dict(w.spec.env)}
        try:
            w.proc = await asyncio.create_subprocess_exec(
                *self.argv(w), cwd=str(w.spec.code_dir), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=self._limits,
                limit=MAX_LINE)
        except OSError as e:
            w.ready.set_exception(WorkerFailed("BOOT_ERROR", f"could not start Deno: {e}"))
            self.workers.pop(w.spec.key, None)
            return
        self.started += 1
        w.tasks = [asyncio.create_task(self._read(w, w.proc.stdout, "stdout")),
                   asyncio.create_task(self._read(w, w.proc.stderr, "stderr")),
                   asyncio.create_task(self._watch_exit(w))]
        try:
            await asyncio.wait_for(asyncio.shield(w.ready), BOOT_TIMEOUT_S)
        except asyncio.TimeoutError:
            if not w.ready.done():
                w.ready.set_exception(WorkerFailed("BOOT_ERROR", f"the function did not start within {BOOT_TIMEOUT_S:.0f} s"))
            await self.stop(w, "boot timeout")
        except WorkerFailed:
            pass

    async def _read(self, w: Worker, stream: asyncio.StreamReader | None, which: str) -> None:
        assert stream is not None
        spec = w.spec
        while True:
            try:
                raw = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                raw = await stream.read(MAX_LINE)  # a line longer than we keep: take it in pieces
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(RS):
                try:
                    rec = json.loads(line[1:])
                except ValueError:
                    rec = {"l": "info", "m": line[1:]}
                if rec.get("ready"):
                    if w.ready is not None and not w.ready.done():
                        w.ready.set_result(None)
                    continue
                self.sink(spec.ref, spec.slug, str(rec.get("l") or "info"), spec.version, rec.get("r") or None,
                          str(rec.get("m", "")))
            else:
                if which == "stderr":
                    w.stderr_tail.append(line)
                self.sink(spec.ref, spec.slug, "error" if which == "stderr" else "info", spec.version, None, line)

    async def _watch_exit(self, w: Worker) -> None:
        assert w.proc is not None
        code = await w.proc.wait()
        await asyncio.gather(*w.tasks[:2], return_exceptions=True)  # drain its last output
        if w.ready is not None and not w.ready.done():
            reason = {70: "its code threw while loading", 71: "it never called Deno.serve(handler)"}.get(
                code, "see its logs")
            w.ready.set_exception(WorkerFailed("BOOT_ERROR", f"Function failed to start: {reason}"))
        if not w.stopping and w.ready is not None and w.ready.done() and not w.ready.exception():
            why = w.killed_for or f"exit code {code}"
            self.sink(w.spec.ref, w.spec.slug, "error", w.spec.version, None, f"worker stopped ({why})")
        if self.workers.get(w.spec.key) is w:
            self.workers.pop(w.spec.key, None)
        if w.session is not None:
            await w.session.close()
        w.socket_path.unlink(missing_ok=True)

    # -- stopping ------------------------------------------------------------------------------
    async def retire(self, w: Worker, grace_s: float = 30.0) -> None:
        """Stop once its in-flight invocations finish (at most `grace_s`)."""
        if self.workers.get(w.spec.key) is w:
            self.workers.pop(w.spec.key, None)
        deadline = time.monotonic() + grace_s
        while w.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.stop(w, "superseded")

    async def stop(self, w: Worker, why: str) -> None:
        w.stopping = True
        if self.workers.get(w.spec.key) is w:
            self.workers.pop(w.spec.key, None)
        if w.proc is not None and w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(w.proc.wait(), 5)
        log.debug("worker %s stopped: %s", w.spec.key, why)

    async def kill(self, w: Worker, code: str) -> None:
        """Kill a worker that broke a limit; its in-flight invocations fail with `code`."""
        w.killed_for = code
        if self.workers.get(w.spec.key) is w:
            self.workers.pop(w.spec.key, None)
        if w.proc is not None and w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.proc.pid, signal.SIGKILL)
        self.sink(w.spec.ref, w.spec.slug, "error", w.spec.version, None,
                  {"WORKER_LIMIT": "worker killed: memory limit exceeded",
                   "WORKER_TIMEOUT": "worker killed: wall clock limit exceeded"}.get(code, f"worker killed: {code}"))

    def stop_function(self, ref: str, slug: str | None = None) -> None:
        for w in list(self.workers.values()):
            if w.spec.ref == ref and (slug is None or w.spec.slug == slug):
                asyncio.create_task(self.retire(w))

    def _evict_if_full(self) -> None:
        idle = sorted((w for w in self.workers.values() if w.inflight == 0), key=lambda w: w.last_used)
        excess = len(self.workers) - self.max_workers
        for w in idle[:max(excess, 0)]:
            asyncio.create_task(self.stop(w, "evicted"))

    async def _reap_forever(self) -> None:
        rss_limit = self.memory_mb * 3 * 1024 * 1024
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for w in list(self.workers.values()):
                if w.proc is None or w.proc.returncode is not None:
                    continue
                if w.inflight == 0 and now - w.last_used > self.idle_s:
                    await self.stop(w, "idle")
                elif rss_bytes(w.proc.pid) > rss_limit:
                    await self.kill(w, "WORKER_LIMIT")


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
