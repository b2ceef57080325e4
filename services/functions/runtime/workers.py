"""Warm Deno workers: one process per (function version, environment), serving HTTP on its
own Unix socket, reused across invocations, stopped when idle, superseded by a redeploy or
a secret change, killed when it breaks a limit.

Isolation: each worker runs in the operating-system sandbox (sandbox.py: its own
namespaces, an unprivileged uid, a filesystem of its own code only, no network but the
runtime's egress proxy and database forwarder, egress.py). Deno's permissions stay as a
second layer: env limited to the worker's variables, write only its socket, no run, ffi or
sys. Without the sandbox (the operator's explicit insecure setting) only Deno's
permissions remain.

Limits: V8 heap (`--max-old-space-size`), the process's data segment (RLIMIT_DATA, which
also caps ArrayBuffers outside the heap), a resident-memory watchdog, CPU time per
invocation (read from /proc), warm workers per project, and the invocation's wall clock
(enforced by the server).

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
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import aiohttp

from services.shared import procs

from . import sandbox as S
from .egress import DbForwarder, EgressPolicy, EgressProxy

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
    # The project's database: (host, port, database, user, password), or None before it exists.
    db: tuple[str, int, str, str, str] | None = None

    @property
    def key(self) -> str:
        env_digest = hashlib.sha256(json.dumps([self.env, self.db]).encode()).hexdigest()[:16]
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
    run_dir: Path | None = None  # the worker's own folder (sandboxed: its sockets)
    proc: asyncio.subprocess.Process | None = None
    pid: int | None = None  # the Deno process itself (under bwrap, bwrap's child)
    services: list[Any] = field(default_factory=list)  # its egress proxy and database forwarder
    cpu_marks: dict[int, float] = field(default_factory=dict)  # invocation id -> CPU seconds at its start
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
        if self.killed_for == "CPU_LIMIT":
            return WorkerFailed("WORKER_LIMIT", "The function exceeded its CPU time limit and was stopped")
        if self.killed_for == "WORKER_LIMIT" or "out of memory" in tail.lower() or "heap limit" in tail.lower():
            return WorkerFailed("WORKER_LIMIT", "The function exceeded its memory limit and was stopped")
        if self.killed_for == "WORKER_TIMEOUT":
            return WorkerFailed("WORKER_TIMEOUT", "The function exceeded its wall clock limit and was stopped")
        return WorkerFailed("WORKER_ERROR", "The function's worker stopped unexpectedly; see its logs")


class WorkerPool:
    def __init__(self, *, deno: str, socket_dir: Path, deno_dir: Path, memory_mb: int, idle_s: float,
                 max_workers: int, deny_net: list[str], sink: LogSink, sandbox: S.Sandbox | None = None,
                 policy: EgressPolicy | None = None, cpu_time_ms: int = 0, max_per_project: int = 0):
        self.deno = deno
        self.socket_dir = socket_dir
        self.deno_dir = deno_dir
        self.memory_mb = memory_mb
        self.idle_s = idle_s
        self.max_workers = max_workers
        self.deny_net = deny_net  # only without the sandbox: Deno's own (weak) deny list
        self.sink = sink
        self.sandbox = sandbox
        self.policy = policy or EgressPolicy()
        self.cpu_limit_s = cpu_time_ms / 1000 if cpu_time_ms > 0 else None
        self.max_per_project = max_per_project
        self.template_cache = deno_dir / "_template"
        self._template_ready = False  # set once the warmup worker compiled it and stopped
        self.workers: dict[str, Worker] = {}
        self._seq = 0
        self._reaper: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._parent_pid = procs.prepare()
        self.started = 0  # workers started since boot (the bench reports cold starts)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        # 0711: the workers' user (bwrap runs as it) must traverse to its own folders.
        self.deno_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        for d in (self.socket_dir, self.deno_dir):
            os.chmod(d, 0o711)
        # Folders and sockets of workers of a runtime that is gone (named <its pid>-<n>).
        for stale in self.socket_dir.iterdir():
            pid = stale.name.split("-", 1)[0]
            if pid.isdigit() and (int(pid) == os.getpid() or not procs.alive(int(pid))):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        self._reaper = asyncio.create_task(self._reap_forever())
        self._warming = asyncio.create_task(self._warm_cache())

    async def _warm_cache(self) -> None:
        """Boot one throwaway worker (our own warmup.ts, never tenant code) so Deno's cache
        holds the compiled bootstrap. Sandboxed, each project has its own cache; a new one
        starts as a copy of this template, so no project pays for compiling the bootstrap."""
        spec = WorkerSpec(ref="_template", slug="_warmup", version=0, code_dir=BOOTSTRAP.parent,
                          entrypoint_path="warmup.ts", import_map_path=None, env=())
        shutil.rmtree(self.template_cache, ignore_errors=True)
        if self.sandbox is not None:
            run_dir = self.socket_dir / f"{os.getpid()}-warmup"
            w = Worker(spec=spec, socket_path=run_dir / "worker.sock", run_dir=run_dir)
        else:
            w = Worker(spec=spec, socket_path=self.socket_dir / f"{os.getpid()}-warmup.sock")
        w.ready = asyncio.get_running_loop().create_future()
        warmed = False
        try:
            await self._boot(w)
            await asyncio.wait_for(asyncio.shield(w.ready), BOOT_TIMEOUT_S)
            warmed = True
        except Exception as exc:  # noqa: BLE001 -- only an optimisation
            log.warning("warming Deno's cache failed: %r", exc)
        finally:
            await self.stop(w, "warmed")
        self._template_ready = warmed

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
        self._make_room_in_project(spec)
        self._seq += 1
        if self.sandbox is not None:
            run_dir = self.socket_dir / f"{os.getpid()}-{self._seq}"
            w = Worker(spec=spec, socket_path=run_dir / "worker.sock", run_dir=run_dir)
        else:
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

    def _make_room_in_project(self, spec: WorkerSpec) -> None:
        """At most `max_per_project` warm workers per project: the new one replaces the
        project's least recently used idle worker; if all of them are busy, the project must
        wait (one tenant cannot take every slot of the runtime)."""
        if self.max_per_project <= 0:
            return
        mine = [w for w in self.workers.values() if w.spec.ref == spec.ref and w.spec.function != spec.function]
        if len(mine) < self.max_per_project:
            return
        idle = sorted((w for w in mine if w.inflight == 0), key=lambda w: w.last_used)
        if not idle:
            raise WorkerFailed("WORKER_LIMIT", f"The project already runs {len(mine)} function workers, all busy "
                                               f"(at most {self.max_per_project}); try again shortly")
        for w in idle[:len(mine) - self.max_per_project + 1]:
            asyncio.create_task(self.stop(w, "project at its worker limit"))

    def visible_env(self, w: Worker) -> dict[str, str]:
        """The variables the function sees: its secrets, then the platform's (never
        overridden), including how to reach its database and the internet."""
        spec = w.spec
        env = dict(spec.env)
        if spec.db is not None:
            host, port, name, user, password = spec.db
            if self.sandbox is not None:
                host, port = "127.0.0.1", S.DB_PORT  # the bootstrap's bridge to the database forwarder
            env["SUPABASE_DB_URL"] = (f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
                                      f"{quote(name, safe='')}")
        if self.sandbox is not None:
            proxy = f"http://127.0.0.1:{S.EGRESS_PORT}"
            env.update({"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "NO_PROXY": ""})
        return env

    def argv(self, w: Worker) -> list[str]:
        """Deno's arguments (after the binary)."""
        spec = w.spec
        names = ",".join(sorted(self.visible_env(w)))
        args = ["run", "--no-prompt", "--quiet", "--no-lock", f"--v8-flags=--max-old-space-size={self.memory_mb}",
                "--allow-net", f"--allow-env={names or 'NO_ENV'}"]
        if self.sandbox is not None:
            # The sandbox decides what exists and what is reachable; Deno's read permission
            # would only hide the same few files. Writes: its request socket only.
            code, sock, bootstrap = S.CODE, S.RUN / "worker.sock", S.BOOTSTRAP
            # Connecting to a Unix socket needs Deno's write permission on it: the bridges'.
            args += ["--allow-read", f"--allow-write={sock},{S.RUN / 'egress.sock'},{S.RUN / 'db.sock'}"]
            bridges = json.dumps({"egress": [S.EGRESS_PORT, str(S.RUN / "egress.sock")],
                                  "db": [S.DB_PORT, str(S.RUN / "db.sock")] if spec.db else None})
        else:
            code, sock, bootstrap = spec.code_dir, w.socket_path, BOOTSTRAP
            args += [f"--allow-read={spec.code_dir},{w.socket_path}", f"--allow-write={w.socket_path}"]
            if self.deny_net:
                args.append("--deny-net=" + ",".join(self.deny_net))
            bridges = "{}"
        if spec.import_map_path:
            args.append(f"--import-map={code / spec.import_map_path}")
        else:
            args.append("--no-config")
        entry = (code / spec.entrypoint_path).as_uri() if self.sandbox is not None else \
            (spec.code_dir / spec.entrypoint_path).resolve().as_uri()
        return [*args, str(bootstrap), str(sock), entry, names, bridges]

    def _limits(self) -> None:  # runs in the child before exec
        os.setsid()
        procs.die_with_parent(self._parent_pid)  # Deno never outlives the runtime, even on SIGKILL
        data = (self.memory_mb * 2 + 768) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def project_cache(self, ref: str) -> Path:
        """This project's own Deno cache (never shared across tenants: a cache another
        tenant could write would be a way to poison its modules). A new one starts as a copy
        of the template the runtime compiled at start."""
        if ref == "_template":
            path = self.template_cache
        else:
            path = self.deno_dir / "projects" / ref
        if not path.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
            os.chmod(path.parent, 0o711)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            if ref != "_template" and self._template_ready and self.template_cache.is_dir():
                shutil.copytree(self.template_cache, tmp, symlinks=True)
            else:
                tmp.mkdir(mode=0o700)
            if self.sandbox is not None and self.sandbox.uid is not None:
                for dirpath, dirs, files in os.walk(tmp):
                    os.chown(dirpath, self.sandbox.uid, self.sandbox.gid or -1)
                    for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
                        os.chown(os.path.join(dirpath, name), self.sandbox.uid, self.sandbox.gid or -1,
                                 follow_symlinks=False)
            try:
                tmp.rename(path)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another start won the race
        if self.sandbox is not None:
            self.sandbox.prepare_dir(path)
        return path

    async def _start_services(self, w: Worker) -> None:
        """The worker's ways out: its egress proxy and (once it has one) its database."""
        assert w.run_dir is not None and self.sandbox is not None
        shutil.rmtree(w.run_dir, ignore_errors=True)
        self.sandbox.prepare_dir(w.run_dir)
        spec = w.spec

        def refused(why: str) -> None:
            self.sink(spec.ref, spec.slug, "warn", spec.version, None, why)

        w.services.append(EgressProxy(w.run_dir / "egress.sock", self.policy, refused))
        if spec.db is not None:
            host, port, name, user, _ = spec.db
            w.services.append(DbForwarder(w.run_dir / "db.sock", host=host, port=port, database=name, user=user))
        for svc in w.services:
            await svc.start()

    async def _boot(self, w: Worker) -> None:
        assert w.ready is not None
        base = {"NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "PATH": "/usr/bin:/bin"}
        launch: S.Launch | None = None
        try:
            if self.sandbox is not None:
                cache = await asyncio.to_thread(self.project_cache, w.spec.ref)
                await self._start_services(w)
                env = {**self.visible_env(w), **base, "DENO_DIR": str(S.DENO_DIR), "HOME": str(S.DENO_DIR)}
                if self.sandbox.ca_file:
                    env["DENO_CERT"] = str(S.CA_FILE)
                assert w.run_dir is not None
                launch = self.sandbox.launch(self.argv(w), code_dir=w.spec.code_dir, run_dir=w.run_dir,
                                             cache_dir=cache, limits=self._limits)
                argv, pass_fds, preexec = launch.argv, launch.pass_fds, launch.preexec
            else:
                env = {**self.visible_env(w), **base, "DENO_DIR": str(self.deno_dir), "HOME": str(self.deno_dir)}
                argv, pass_fds, preexec = [self.deno, *self.argv(w)], (), self._limits
            w.proc = await asyncio.create_subprocess_exec(
                *argv, cwd="/" if self.sandbox is not None else str(w.spec.code_dir), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=preexec,
                pass_fds=pass_fds, limit=MAX_LINE)
        except OSError as e:
            w.ready.set_exception(WorkerFailed("BOOT_ERROR", f"could not start Deno: {e}"))
            self.workers.pop(w.spec.key, None)
            await self._close_services(w)
            return
        finally:
            if launch is not None:
                launch.close_parent_fds()
        self.started += 1
        w.tasks = [asyncio.create_task(self._read(w, w.proc.stdout, "stdout")),
                   asyncio.create_task(self._read(w, w.proc.stderr, "stderr")),
                   asyncio.create_task(self._watch_exit(w))]
        if launch is not None and launch.info_fd is not None:
            w.pid = await S.read_child_pid(launch.info_fd)
        else:
            w.pid = w.proc.pid
        try:
            await asyncio.wait_for(asyncio.shield(w.ready), BOOT_TIMEOUT_S)
        except asyncio.TimeoutError:
            if not w.ready.done():
                w.ready.set_exception(WorkerFailed("BOOT_ERROR", f"the function did not start within {BOOT_TIMEOUT_S:.0f} s"))
            await self.stop(w, "boot timeout")
        except WorkerFailed:
            pass

    async def _close_services(self, w: Worker) -> None:
        for svc in w.services:
            with contextlib.suppress(Exception):
                await svc.close()
        w.services.clear()
        if w.run_dir is not None:
            shutil.rmtree(w.run_dir, ignore_errors=True)

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
        await self._close_services(w)

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
            self._signal(w)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(w.proc.wait(), 5)
        log.debug("worker %s stopped: %s", w.spec.key, why)

    @staticmethod
    def _signal(w: Worker) -> None:
        """SIGKILL the worker: Deno itself (in its own session under bwrap) and its parent."""
        if w.pid is not None and w.proc is not None and w.pid != w.proc.pid and w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(w.pid, signal.SIGKILL)
        if w.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.proc.pid, signal.SIGKILL)

    async def kill(self, w: Worker, code: str) -> None:
        """Kill a worker that broke a limit; its in-flight invocations fail with `code`."""
        w.killed_for = code
        if self.workers.get(w.spec.key) is w:
            self.workers.pop(w.spec.key, None)
        if w.proc is not None and w.proc.returncode is None:
            self._signal(w)
        self.sink(w.spec.ref, w.spec.slug, "error", w.spec.version, None,
                  {"WORKER_LIMIT": "worker killed: memory limit exceeded",
                   "CPU_LIMIT": "worker killed: CPU time limit exceeded",
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

    # -- CPU time ------------------------------------------------------------------------------
    def cpu_begin(self, w: Worker, invocation: int) -> None:
        """Note the worker's CPU time as an invocation starts; the reaper compares."""
        if self.cpu_limit_s is not None and w.pid is not None:
            now = S.cpu_seconds(w.pid)
            if now is not None:
                w.cpu_marks[invocation] = now

    def cpu_end(self, w: Worker, invocation: int) -> None:
        w.cpu_marks.pop(invocation, None)

    def over_cpu(self, w: Worker) -> bool:
        """Has an in-flight invocation used more CPU than allowed? (The worker's CPU while it
        ran: concurrent invocations of one function share their worker's time.)"""
        if self.cpu_limit_s is None or not w.cpu_marks or w.pid is None:
            return False
        now = S.cpu_seconds(w.pid)
        return now is not None and now - min(w.cpu_marks.values()) > self.cpu_limit_s

    async def _reap_forever(self) -> None:
        rss_limit = self.memory_mb * 3 * 1024 * 1024
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for w in list(self.workers.values()):
                if w.proc is None or w.proc.returncode is not None:
                    continue
                if w.inflight == 0 and now - w.last_used > self.idle_s:
                    await self.stop(w, "idle")
                elif self.over_cpu(w):
                    await self.kill(w, "CPU_LIMIT")
                elif rss_bytes(w.pid or w.proc.pid) > rss_limit:
                    await self.kill(w, "WORKER_LIMIT")


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
