"""The functions runtime: HTTP server for invocations (the gateway proxies
`/p/<ref>/functions/v1/<slug>…` here), JWT verification, warm Deno workers, limits,
invocation records and logs.

`python -m services.functions.runtime` runs it: a plain asyncio process (no eventlet), part
of the functions service (it reads and writes the service's own schema). It calls one other
service: projects, for each project's JWT secret and keys (cached, see resolver.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import aiohttp
import jwt
from aiohttp import web
from yarl import URL

from services.shared.settings import Settings, load_settings

from ..application import FunctionsApplication
from ..bootstrap import build
from .egress import EgressPolicy
from .recorder import Journal, Recorder
from .resolver import Resolver, is_gone
from .sandbox import Sandbox, SandboxUnavailable
from .workers import BOOTSTRAP, Worker, WorkerFailed, WorkerPool, deno_binary

log = logging.getLogger("functions.runtime")

ROOT = Path(__file__).resolve().parents[3]
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
FAILURE_STATUS = {"BOOT_ERROR": 503, "WORKER_LIMIT": 546, "WORKER_TIMEOUT": 504, "WORKER_ERROR": 502}
INACTIVE = {"INACTIVE": "the project is paused", "REMOVED": "the project was deleted"}


def error(status: int, code: str, message: str, request_id: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status,
                             headers={"X-Request-Id": request_id, "x-sb-runtime-error": code})


class Runtime:
    def __init__(self, settings: Settings, app: FunctionsApplication, fetch_credentials: Callable[[str], dict[str, str]],
                 *, deno: str | None = None, name: str | None = None):
        self.settings = settings
        self.app = app
        state = Path(settings.state_dir)
        if not state.is_absolute():
            state = ROOT / state
        self.state = state / "functions"
        # Stable across restarts: the journal's batch ids derive from it.
        self.name = name or f"{socket.gethostname()}:{settings.functions_runtime_port}"
        self.resolver = Resolver(app, fetch_credentials, conninfo=settings.db_conninfo,
                                 code_root=self.state / "code", project_url=settings.project_api_url,
                                 credentials_ttl_s=settings.functions_credentials_ttl_s)
        journal = Journal(self.state / "journal", self.name)
        self.recorder = Recorder(lambda rs, seq: app.record_invocations(f"{self.name}/{journal.epoch}", rs, seq),
                                 app.logs.append, journal)
        deno = deno or deno_binary()
        # Raises SandboxUnavailable when the kernel refuses the namespaces (unless the
        # operator set the explicit insecure flag): the runtime does not start then.
        self.sandbox = Sandbox.create(deno=deno, bootstrap=BOOTSTRAP, user=settings.functions_sandbox_user,
                                      insecure=settings.functions_insecure_no_sandbox, state=self.state / "sock")
        self.pool = WorkerPool(deno=deno, socket_dir=self.state / "sock", deno_dir=self.state / "deno",
                               memory_mb=settings.functions_memory_mb, idle_s=settings.functions_idle_s,
                               max_workers=settings.functions_max_workers, deny_net=deny_list(settings),
                               sink=self._worker_log, sandbox=self.sandbox,
                               policy=EgressPolicy(settings.functions_egress_deny.split(",")),
                               cpu_time_ms=settings.functions_cpu_time_ms,
                               max_per_project=settings.functions_max_workers_per_project)
        self.wall_clock_s = float(settings.functions_wall_clock_s)
        self.max_body = settings.functions_max_request_mb * 1024 * 1024
        self.invocations = 0

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        warm = getattr(self.resolver.fetch_credentials, "warm", None)
        if callable(warm):  # open the RPC connection now, not on the first invocation
            self._warm_rpc = asyncio.create_task(asyncio.to_thread(warm))
        self.resolver.start()
        self.recorder.start()
        await self.pool.start()

    async def close(self) -> None:
        await self.pool.close()
        await self.recorder.close()
        self.resolver.close()

    def web_app(self) -> web.Application:
        wa = web.Application(client_max_size=self.max_body)
        # Internal endpoints: the runtime listens on loopback only and the project edge
        # forwards nothing but /invoke/<ref>/<slug>… here.
        wa.router.add_get("/health", self.health)
        wa.router.add_get("/status", self.status)
        wa.router.add_route("*", r"/invoke/{ref:[a-z]{20}}/{slug:[A-Za-z0-9_-]+}{tail:(/.*)?}", self.invoke)

        async def on_startup(_: web.Application) -> None:
            await self.start()

        async def on_cleanup(_: web.Application) -> None:
            await self.close()

        wa.on_startup.append(on_startup)
        wa.on_cleanup.append(on_cleanup)
        return wa

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"service": "functions-runtime", "status": "ok",
                                  "sandbox": "bwrap" if self.sandbox is not None else "NONE (insecure)"})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({
            "workers": [{"key": w.spec.key, "ref": w.spec.ref, "slug": w.spec.slug, "version": w.spec.version,
                         "socket": str(w.socket_path), "inflight": w.inflight, "pid": w.proc.pid if w.proc else None,
                         "idle_s": round(time.monotonic() - w.last_used, 1)} for w in self.pool.workers.values()],
            "workers_started": self.pool.started, "invocations": self.invocations,
            "records_written": self.recorder.written, "records_backlog": self.recorder.backlog,
            "records_recovered": self.recorder.recovered, "logs_written": self.recorder.logs_written,
            "logs_shed": self.recorder.logs_shed, "write_failures": self.recorder.failures})

    def _worker_log(self, ref: str, slug: str, level: str, version: int, request_id: str | None, message: str) -> None:
        self.recorder.log(ref, slug, level if level in ("debug", "info", "warn", "error") else "info", version,
                          request_id, message)

    # -- one invocation ------------------------------------------------------------------------
    async def invoke(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic()
        started = datetime.now(timezone.utc)
        request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
        ref, slug, tail = request.match_info["ref"], request.match_info["slug"], request.match_info["tail"]
        self.invocations += 1
        if request.content_length is not None and request.content_length > self.max_body:
            return error(413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {self.max_body} bytes",
                         request_id)
        try:
            target = await self.resolver.target(ref, slug)
            tenant = await self.resolver.tenant(ref) if target else None
        except Exception:  # noqa: BLE001
            log.exception("resolving %s/%s", ref, slug)
            return error(500, "INTERNAL_ERROR", "The runtime could not load the function", request_id)
        if target is None or (tenant and tenant.get("status") == "REMOVED"):
            return error(404, "NOT_FOUND", "Requested function was not found", request_id)
        record: dict[str, Any] = {"ref": ref, "org_slug": target["org_slug"], "slug": slug, "version": None,
                                  "request_id": request_id, "at_ms": int(started.timestamp() * 1000)}
        if tenant and tenant.get("status") in INACTIVE:
            return await self._finish(record, t0, started, request,
                                      error(503, "PROJECT_INACTIVE", f"Function unavailable: {INACTIVE[tenant['status']]}",
                                            request_id))
        try:
            # CORS preflights carry no credentials: as on Supabase, they reach the function
            # (which answers them with its CORS headers) without a JWT.
            if target["verify_jwt"] and request.method != "OPTIONS":
                refusal = await self._verify(request, ref)
                if refusal is not None:
                    return await self._finish(record, t0, started, request, error(401, "UNAUTHORIZED", refusal, request_id))
            spec = await self.resolver.worker_spec(target)
        except Exception as exc:  # noqa: BLE001
            if is_gone(exc):
                return error(404, "NOT_FOUND", "Requested function was not found", request_id)
            log.exception("preparing %s/%s", ref, slug)
            return await self._finish(record, t0, started, request,
                                      error(500, "INTERNAL_ERROR", "The runtime could not prepare the function", request_id))
        record["version"] = target["version"]
        deadline = t0 + self.wall_clock_s
        try:
            worker = await asyncio.wait_for(self.pool.acquire(spec), max(deadline - time.monotonic(), 0.001))
        except WorkerFailed as f:
            return await self._finish(record, t0, started, request, error(FAILURE_STATUS[f.code], f.code, f.message, request_id))
        except asyncio.TimeoutError:
            return await self._finish(record, t0, started, request, error(
                504, "WORKER_TIMEOUT", f"The function did not answer within {self.wall_clock_s:.0f} s", request_id))
        return await self._proxy(request, worker, slug, tail, record, t0, started, deadline, request_id)

    async def _verify(self, request: web.Request, ref: str) -> str | None:
        """None if the request carries a valid JWT of this project, else why not."""
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            return "Missing authorization header"
        if scheme.lower() != "bearer" or not token.strip():
            return "Authorization must be 'Bearer <JWT>'"
        token = token.strip()
        creds = await self.resolver.creds(ref)
        if _valid(token, creds["jwt_secret"], ref):
            return None
        # Perhaps the secret was rotated since we cached it: look once more (rate-limited).
        if self.resolver.may_refresh(ref):
            creds = await self.resolver.creds(ref, refresh=True)
            if _valid(token, creds["jwt_secret"], ref):
                return None
        return "Invalid JWT"

    async def _proxy(self, request: web.Request, worker: Worker, slug: str, tail: str, record: dict[str, Any],
                     t0: float, started: datetime, deadline: float, request_id: str) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Request-Id"] = request_id
        headers.setdefault("X-Forwarded-Host", request.headers.get("X-Forwarded-Host") or request.host)
        headers.setdefault("X-Forwarded-Proto", request.headers.get("X-Forwarded-Proto") or request.scheme)
        path = f"/{slug}{tail}" + (f"?{request.query_string}" if request.query_string else "")
        if worker.session is None:
            worker.session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(worker.socket_path)),
                                                   auto_decompress=False)
        response: web.StreamResponse | None = None
        worker.inflight += 1
        invocation = self.invocations
        self.pool.cpu_begin(worker, invocation)
        too_large = False
        max_body = self.max_body

        async def body_chunks() -> Any:
            # Streamed to the worker as it arrives, counted: past the limit the upload stops.
            nonlocal too_large
            sent = 0
            async for chunk in request.content.iter_any():
                sent += len(chunk)
                if sent > max_body:
                    too_large = True
                    raise aiohttp.ClientPayloadError("request body too large")
                yield chunk

        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                body = body_chunks() if request.can_read_body else None
                async with worker.session.request(request.method, URL("http://worker" + path, encoded=True),
                                                  headers=headers, data=body, allow_redirects=False) as upstream:
                    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                    for k, v in upstream.headers.items():
                        if k.lower() not in HOP_BY_HOP:
                            response.headers.add(k, v)
                    response.headers["X-Request-Id"] = request_id
                    if upstream.headers.get("Content-Length") is not None:
                        response.content_length = int(upstream.headers["Content-Length"])
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
            record["status"] = upstream.status
            self._record(record, t0, started, request)
            await response.write_eof()
            return response
        except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            if too_large and (response is None or not response.prepared):
                return await self._finish(record, t0, started, request, error(
                    413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {self.max_body} bytes", request_id))
            failure = await self._diagnose(worker, exc)
            if response is None or not response.prepared:
                return await self._finish(record, t0, started, request, error(
                    FAILURE_STATUS[failure.code], failure.code, failure.message, request_id))
            # Headers already went out: all we can do is cut the response short.
            record["status"] = FAILURE_STATUS[failure.code]
            self._record(record, t0, started, request)
            if request.transport is not None:
                request.transport.close()
            return response
        finally:
            self.pool.cpu_end(worker, invocation)
            worker.inflight -= 1
            worker.last_used = time.monotonic()

    async def _diagnose(self, worker: Worker, exc: BaseException) -> WorkerFailed:
        if isinstance(exc, asyncio.TimeoutError):
            # Too slow. If its event loop is stuck (a busy loop), nothing else it runs can
            # finish either: kill it. If it still answers, only this request gave up.
            if not await self._pings(worker):
                await self.pool.kill(worker, "WORKER_TIMEOUT")
            return WorkerFailed("WORKER_TIMEOUT", f"The function exceeded its wall clock limit of {self.wall_clock_s:.0f} s")
        # The connection broke: most likely the process died (memory). Give it a moment to be reaped.
        if worker.proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(worker.proc.wait(), 1.0)
        return worker.failure()

    async def _pings(self, worker: Worker) -> bool:
        if worker.session is None or not worker.alive:
            return False
        try:
            async with asyncio.timeout(1.0):
                async with worker.session.get("http://worker/__sb_ping") as r:
                    return r.status == 200
        except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError):
            return False

    def _record(self, record: dict[str, Any], t0: float, started: datetime, request: web.Request) -> None:
        duration = (time.monotonic() - t0) * 1000
        record["duration_ms"] = round(duration, 3)
        status = record["status"]
        level = "error" if status >= 500 else "warn" if status >= 400 else "info"
        self.recorder.log(record["ref"], record["slug"], level, record["version"], record["request_id"],
                          f"{request.method} {request.path_qs} {status} {duration:.1f}ms", kind="invocation",
                          status=status, duration_ms=record["duration_ms"], at=started)
        self.recorder.invocation(record)  # journaled now, stored in the background

    async def _finish(self, record: dict[str, Any], t0: float, started: datetime, request: web.Request,
                      response: web.Response) -> web.Response:
        record["status"] = response.status
        self._record(record, t0, started, request)
        return response


def _valid(token: str, secret: str, ref: str) -> bool:
    try:
        # Supabase user JWTs carry `aud` ("authenticated"): not checked, as Supabase's runtime does.
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"], "verify_aud": False})
    except jwt.InvalidTokenError:
        return False
    # Keys name their project; a user JWT carries none (its signature is what binds it).
    return claims.get("ref") in (None, ref)


def deny_list(settings: Settings) -> list[str]:
    """Only without the sandbox (functions_insecure_no_sandbox): Deno's own deny list of the
    broker, its management API and this runtime, by the names written here. Weak (Deno
    matches host names as written: 127.0.0.2 or the machine's other addresses get through);
    the sandbox is what actually isolates workers."""
    ports = {settings.amqp_port, settings.functions_runtime_port}
    mgmt = urlsplit(settings.rabbitmq_management_url)
    if mgmt.port:
        ports.add(mgmt.port)
    hosts = {"127.0.0.1", "localhost", "0.0.0.0", "[::1]", settings.amqp_host, settings.functions_runtime_host}
    if mgmt.hostname:
        hosts.add(mgmt.hostname)
    return sorted(f"{h}:{p}" for h in hosts if h for p in ports)


SHUTDOWN_BUDGET_S = 3.5  # SIGTERM to exit: every platform process ends within 5 s


class ProjectsCredentials:
    """projects.get_tenant_credentials over RPC, from this non-nameko process: one long-lived
    standalone proxy, one call at a time."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._cm: Any = None
        self._proxy: Any = None

    def __call__(self, ref: str) -> dict[str, str]:
        from services.shared.nameko_ext import RemotePort, cluster_rpc

        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._proxy is None:
                        self._cm = cluster_rpc(self.settings, timeout=10)
                        self._proxy = self._cm.__enter__()
                    return dict(RemotePort(self._proxy.projects).get_tenant_credentials(ref))
                except Exception as exc:  # noqa: BLE001
                    if is_gone(exc) or attempt == 2:
                        raise
                    self.close_locked()  # a broken connection: open a new proxy and retry once
            raise AssertionError("unreachable")

    def warm(self) -> None:
        from services.shared.nameko_ext import cluster_rpc

        with self._lock:
            if self._proxy is None:
                try:
                    self._cm = cluster_rpc(self.settings, timeout=10)
                    self._proxy = self._cm.__enter__()
                except Exception as exc:  # noqa: BLE001 -- the first call will try again
                    log.warning("could not open the RPC connection yet: %s", exc)
                    self.close_locked()

    def close_locked(self) -> None:
        if self._cm is not None:
            with contextlib.suppress(Exception):
                self._cm.__exit__(None, None, None)
        self._cm = self._proxy = None


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    app = build(settings)
    try:
        credentials = ProjectsCredentials(settings)
        runtime = Runtime(settings, app, credentials)
    except SandboxUnavailable as exc:
        log.error("refusing to start: %s", exc)
        app.close()
        raise SystemExit(f"functions runtime: refusing to start: {exc}")
    web_app = runtime.web_app()

    async def serve() -> None:
        runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.functions_runtime_host, settings.functions_runtime_port,
                           reuse_address=True, backlog=1024)
        await site.start()
        print(f"functions runtime on http://{settings.functions_runtime_host}:{settings.functions_runtime_port}",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        try:  # stops workers, flushes records; bounded, so SIGTERM always ends the process
            await asyncio.wait_for(runner.cleanup(), SHUTDOWN_BUDGET_S)
        except asyncio.TimeoutError:
            log.warning("shutdown took longer than %ss; exiting anyway", SHUTDOWN_BUDGET_S)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve())
    finally:
        with contextlib.suppress(Exception):
            credentials.close_locked()
        with contextlib.suppress(Exception):
            app.close()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # Not asyncio.run's ending: it joins the default executor's threads, and a thread
        # left inside the RPC client (nameko's standalone proxy) never ends, so the runtime
        # hung on SIGTERM forever. Everything worth keeping is flushed by now.
        os._exit(0)


if __name__ == "__main__":
    main()
