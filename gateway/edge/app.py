"""The project edge: a small router of per-API upstreams for every project's API URL.

    {edge_public_url}/<ref>/<api>/<rest>       path routing (always)
    <ref>.<edge_domain>/<api>/<rest>           host routing (when edge_domain is set)

`<api>` is an upstream's prefix: `functions/v1` (edge functions, functions.py) today; REST,
Auth, Storage and Realtime mount here the same way (`Edge.mount`). What the edge does for
every upstream, so none can forget it:

1. refuses unsafe raw paths (dot segments, encoded separators, double encoding: 400,
   gateway/paths.py) before routing;
2. strips, on the way in, the platform's credentials: `Cookie` (the dashboard's session
   cookie is sent to every port of its host), `Authorization`/`apikey` carrying a personal
   access token (`sbp_…`), `X-CSRF-Token`, proxy and hop-by-hop headers, and any
   `X-Forwarded-*` the client sent (the edge sets its own);
3. drops, on the way out, `Set-Cookie` for the platform's cookie names (`sp_…`) and
   hop-by-hop headers;
4. counts usage per project (requests and egress bytes of every answer but a 404) into
   the usage outbox, with gateway/usage.py's meter (the same batches and contract).

Upstream addresses (e.g. the functions runtime) listen on loopback; the edge forwards only
the routes its upstreams name, never an internal endpoint (a runtime's /status).

Imports aiohttp, the standard library, shared settings and the gateway's usage meter and
path rules; nameko (for the organization lookup over RPC) only inside a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Protocol
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from services.shared.settings import Settings, load_settings

from ..paths import unsafe_path
from services.shared.usage import UsageMeter
from services.shared.tenants import StandaloneRpc, Tenant, Tenants, verify_jwt

from .requestlog import RequestLog, records_for

log = logging.getLogger("gateway.edge")

REF = re.compile(r"^[a-z]{20}$")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
# Platform credentials that must never reach tenant code.
STRIPPED_IN = {"cookie", "x-csrf-token", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
               "x-forwarded-port", "forwarded", "x-real-ip"}
CREDENTIAL_HEADERS = ("authorization", "apikey")
PLATFORM_TOKEN = re.compile(r"(^|\s)sbp_", re.I)
PLATFORM_COOKIE = re.compile(r"^\s*(__Host-|__Secure-)?sp_", re.I)
# CORS as Supabase's API gateway answers it, for the APIs that have it (REST, Auth, Storage).
CORS_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS"
CORS_DEFAULT_HEADERS = ("authorization, x-client-info, apikey, content-type, accept, accept-profile, "
                        "content-profile, prefer, range, x-upsert, x-supabase-api-version")
CORS_EXPOSE = ("Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, "
               "Transfer-Encoding, Range-Unit, Content-Profile, Preference-Applied, X-Request-Id, "
               "X-Supabase-Api-Version")


def _json(status: int, message: str, request_id: str, **extra: Any) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status, headers={"X-Request-Id": request_id})


@dataclass
class Upstreamed:
    """An upstream's answer, before the edge cleans its headers and streams it out."""

    status: int
    headers: CIMultiDictProxy[str] | CIMultiDict[str]
    body: AsyncIterator[bytes]
    reason: str | None = None
    release: Callable[[], Any] | None = None


@dataclass
class Call:
    """One request as an upstream sees it: already checked and cleaned by the edge
    (docs/edge.md, "Mounting an upstream")."""

    request: web.Request
    ref: str
    rest: str  # raw (still percent-encoded) path after the upstream's prefix, starting with "/" or empty
    headers: CIMultiDict[str]  # inbound headers without platform credentials or hop-by-hop ones
    request_id: str
    tenant: Tenant | None = None  # None only for upstreams with key_required = False
    apikey_claims: dict[str, Any] | None = None  # the verified apikey's claims
    claims: dict[str, Any] | None = None  # the verified Bearer JWT's claims, else the apikey's
    bearer: str | None = None  # the raw Bearer token, if any
    jwt_error: str | None = None  # why the Bearer token failed, if it did

    @property
    def role(self) -> str | None:
        return None if self.claims is None else str(self.claims.get("role") or "") or None


class Upstream(Protocol):
    """Optional attributes, read with getattr: `key_required` (default True: the edge demands
    this project's apikey and hands the upstream its Tenant), `open_paths` (rests reachable
    without a key; anything with `in`), `keyless(call) -> bool` (the same, decided per call), `cors` (default: key_required; the edge answers preflights and adds
    Supabase's CORS headers), `async stop_tenant(ref)` (the project paused, went away or idled)."""

    prefix: str  # path segment(s) after the ref, e.g. "functions/v1"

    async def open(self, call: Call) -> web.StreamResponse | Upstreamed: ...

    async def close(self) -> None: ...


def clean_request_headers(headers: CIMultiDictProxy[str], *, forwarded_host: str, forwarded_proto: str,
                          peer: str | None) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        lk = k.lower()
        if lk in HOP_BY_HOP or lk in STRIPPED_IN:
            continue
        if lk in CREDENTIAL_HEADERS and PLATFORM_TOKEN.search(v):
            continue  # a personal access token of the platform: never the tenant's business
        out.add(k, v)
    out["X-Forwarded-Host"] = forwarded_host
    out["X-Forwarded-Proto"] = forwarded_proto
    if peer:
        out["X-Forwarded-For"] = peer
    return out


def clean_response_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        lk = k.lower()
        if lk in HOP_BY_HOP:
            continue
        if lk == "set-cookie" and PLATFORM_COOKIE.match(v.split("=", 1)[0] + "="):
            continue  # tenant code may not set (or overwrite) the dashboard's cookies
        out.add(k, v)
    return out


def add_cors(headers: Any) -> None:
    for k in [k for k in headers if k.lower().startswith("access-control-")]:
        del headers[k]
    headers["Access-Control-Allow-Origin"] = "*"
    headers["Access-Control-Expose-Headers"] = CORS_EXPOSE


def preflight(request: web.Request, request_id: str) -> web.Response:
    asked = request.headers.get("Access-Control-Request-Headers")
    return web.Response(status=200, headers={
        "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Allow-Headers": asked or CORS_DEFAULT_HEADERS, "Access-Control-Max-Age": "3600",
        "Vary": "Access-Control-Request-Headers", "X-Request-Id": request_id})


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class Edge:
    def __init__(self, settings: Settings, meter: UsageMeter | None = None,
                 org_lookup: Callable[[str], str] | None = None, tenants: Tenants | None = None,
                 request_log: RequestLog | None = None):
        self.settings = settings
        self.request_log = request_log
        self.tenants = tenants
        self.upstreams: dict[str, Upstream] = {}
        public = urlsplit(settings.edge_public_url)
        self.public_host = public.netloc
        self.public_proto = public.scheme or "http"
        self.domain = settings.edge_domain.lower().strip(".")
        self.meter = meter
        self.org_lookup = org_lookup

    def mount(self, upstream: Upstream) -> None:
        self.upstreams[upstream.prefix.strip("/")] = upstream

    # -- routing -------------------------------------------------------------------------------
    def route(self, request: web.Request) -> tuple[str, Upstream, str, str] | None:
        """(ref, upstream, rest, forwarded host) for this request, or None."""
        raw = request.raw_path.split("?", 1)[0]
        host = (request.headers.get("Host") or "").lower()
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.domain and hostname.endswith("." + self.domain):
            ref = hostname[: -len(self.domain) - 1]
            path, forwarded = raw, host
        else:
            _, _, tail = raw.partition("/")
            ref, slash, after = tail.partition("/")
            path, forwarded = "/" + after if slash else "", self.public_host or host
        if not REF.match(ref):
            return None
        for prefix, upstream in self.upstreams.items():
            if path == "/" + prefix or path.startswith("/" + prefix + "/"):
                return ref, upstream, path[len(prefix) + 1:], forwarded
        return None

    # -- one request ---------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
        why = unsafe_path(request.raw_path)
        if why:
            return _json(400, why, request_id)
        if request.path == "/health" and request.method in ("GET", "HEAD"):
            return web.json_response({"service": "edge", "status": "ok", "apis": sorted(self.upstreams)})
        found = self.route(request)
        if found is None:
            return _json(404, "no such project API here: use <project URL>/<api>/…, e.g. /<ref>/functions/v1/<slug>",
                         request_id)
        ref, upstream, rest, forwarded = found
        request["edge_log"] = (upstream.prefix.strip("/"), rest, request_id, time.monotonic())
        key_required = getattr(upstream, "key_required", True)
        cors = getattr(upstream, "cors", key_required)
        if cors and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return preflight(request, request_id)
        headers = clean_request_headers(request.headers, forwarded_host=forwarded, forwarded_proto=self.public_proto,
                                        peer=request.remote)
        headers["X-Request-Id"] = request_id
        call = Call(request=request, ref=ref, rest=rest, headers=headers, request_id=request_id)
        if key_required:
            refused = await self._check_key(call, upstream)
            if refused is not None:
                if cors:
                    add_cors(refused.headers)
                await self._count(ref, refused.status, len(refused.body) if isinstance(refused.body, bytes) else 0,
                                  request)
                return refused
        try:
            answer = await upstream.open(call)
        except Exception:  # noqa: BLE001
            log.exception("%s upstream failed for %s", upstream.prefix, ref)
            answer = _json(502, f"the {upstream.prefix} service is unavailable; try again shortly", request_id)
        if isinstance(answer, web.StreamResponse):  # a complete answer of the upstream's own (an error)
            answer.headers["X-Request-Id"] = request_id
            if cors:
                add_cors(answer.headers)
            body = answer.body if isinstance(answer, web.Response) else None
            await self._count(ref, answer.status, len(body) if isinstance(body, bytes) else 0, request)
            return answer
        return await self._stream(request, ref, answer, request_id, cors)

    async def _check_key(self, call: Call, upstream: Upstream) -> web.Response | None:
        """Kong's part: the project must be live and the apikey this project's; the Bearer
        token is verified (not refused: the API behind decides). None when the call may go on."""
        rid = call.request_id
        if self.tenants is None:
            return _json(502, f"the {upstream.prefix} service is unavailable; try again shortly", rid)
        try:
            tenant = await self.tenants.get(call.ref)
        except Exception as exc:  # noqa: BLE001
            log.warning("tenant lookup for %s failed: %s", call.ref, exc)
            return _json(503, "the project's settings could not be read; try again shortly", rid)
        if tenant is None:
            call.request.pop("edge_log", None)  # no such project: nobody's log (and no way to fill the table)
            return _json(404, f"project {call.ref} not found", rid)
        if not tenant.live:
            await self.stop_tenant(call.ref, forget=False)  # whatever still runs for it (no-op if nothing)
            word = "paused" if tenant.status in ("INACTIVE", "PAUSING", "PAUSE_FAILED") else "not available"
            return _json(503, f"project {call.ref} is {word} ({tenant.status}); restore it from the dashboard "
                              "or the Management API", rid)
        request = call.request
        apikey = request.headers.get("apikey") or request.query.get("apikey")
        bearer = _bearer(request.headers.get("Authorization"))
        if apikey is None:
            keyless = getattr(upstream, "keyless", None)  # e.g. public or signed storage URLs
            if call.rest in getattr(upstream, "open_paths", ()) or (keyless is not None and keyless(call)):
                call.tenant = tenant
                return None
            return _json(401, "No API key found in request", rid,
                         hint="No `apikey` request header or url param was found.")
        claims, why = verify_jwt(apikey, tenant)
        if claims is None and self.tenants.may_refresh(call.ref):  # perhaps rotated since we cached it
            fresh = await self.tenants.get(call.ref, refresh=True)
            if fresh is not None and fresh.live:
                tenant = fresh
                claims, why = verify_jwt(apikey, tenant)
        if claims is None:
            return _json(401, "Invalid API key", rid, hint="Double check your Supabase `anon` or `service_role` API key.")
        call.tenant, call.apikey_claims, call.claims = tenant, claims, claims
        if bearer is not None:
            call.bearer = bearer
            user, call.jwt_error = verify_jwt(bearer, tenant)
            if user is not None:
                call.claims = user
        return None

    async def stop_tenant(self, ref: str, forget: bool = True) -> None:
        """The project was paused or deleted: every upstream drops what it runs or holds for it."""
        if forget and self.tenants is not None:
            self.tenants.forget(ref)
        for upstream in self.upstreams.values():
            stop = getattr(upstream, "stop_tenant", None)
            if stop is not None:
                with contextlib.suppress(Exception):
                    await stop(ref)

    async def _stream(self, request: web.Request, ref: str, answer: Upstreamed, request_id: str,
                      cors: bool = False) -> web.StreamResponse:
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        response.headers.extend(clean_response_headers(answer.headers))
        response.headers["X-Request-Id"] = request_id
        if cors:
            add_cors(response.headers)
        length = answer.headers.get("Content-Length")
        if length is not None and length.isdigit():
            response.content_length = int(length)
        sent = 0
        try:
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in answer.body:
                    sent += len(chunk)
                    await response.write(chunk)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 -- the upstream broke mid-answer: cut it short
            log.warning("upstream answer for %s broke off: %s", ref, exc)
            if request.transport is not None:
                request.transport.close()
        finally:
            if answer.release is not None:
                with contextlib.suppress(Exception):
                    answer.release()
            await self._count(ref, answer.status, sent, request)
        return response

    async def _count(self, ref: str, status: int, egress: int, request: web.Request) -> None:
        """Usage of the project API, as the gateway counts it: every answer but a 404; and
        the request's line in the project's logs (every answer)."""
        routed = request.get("edge_log")
        if self.request_log is not None and routed is not None:
            prefix, rest, request_id, t0 = routed
            self.request_log.add(records_for(ref, prefix, request.method, rest, request.query_string, status,
                                             (time.monotonic() - t0) * 1000, request_id, request.remote,
                                             request.headers.get("User-Agent"), time.time()))
        if self.meter is None or status == 404:
            return
        org = self.meter.directory.orgs.get(ref)
        if org is None and self.org_lookup is not None:
            lookup = self.org_lookup
            org = await asyncio.to_thread(self.meter.directory.org_of, ref, lookup)
        if org is not None:
            self.meter.add(org, ref, requests=1, egress=0 if request.method == "HEAD" else egress)

    def web_app(self) -> web.Application:
        # No body size here: each upstream streams and limits its own.
        wa = web.Application(client_max_size=1024 ** 3)
        wa.router.add_route("*", "/{tail:.*}", self.handle)

        async def on_cleanup(_: web.Application) -> None:
            for upstream in self.upstreams.values():
                with contextlib.suppress(Exception):
                    await upstream.close()
            if self.meter is not None:
                await asyncio.to_thread(self.meter.close)
            if self.request_log is not None:
                await asyncio.to_thread(self.request_log.close)

        wa.on_cleanup.append(on_cleanup)
        return wa


class ProjectOrgs(StandaloneRpc):
    """projects.project_org over RPC (see StandaloneRpc; the meter caches the answer per project)."""

    def __call__(self, ref: str) -> str:
        return str(self.call_service("projects", "project_org", ref))


class ProjectLogs(StandaloneRpc):
    """database.record_logs over RPC: where the request log's batches go."""

    def __call__(self, records: list[dict[str, Any]]) -> Any:
        return self.call_service("database", "record_logs", records)


def build_edge(settings: Settings) -> Edge:
    from ..usage import build_meter
    from .functions import FunctionsUpstream

    from .realtime import RealtimeUpstream
    from .rest import RestUpstream
    from services.shared.tenants import ProjectsRpc

    rpc = ProjectsRpc(settings)
    tenants = Tenants(settings, lambda ref: rpc.call("edge_tenant", ref))
    request_log = RequestLog(ProjectLogs(settings))
    request_log.start()
    edge = Edge(settings, build_meter(settings), ProjectOrgs(settings), tenants, request_log)
    edge.mount(FunctionsUpstream(settings))
    edge.mount(RestUpstream(settings, tenants))
    edge.mount(RealtimeUpstream(settings))
    mount_auth_and_storage(edge, settings)
    return edge


def mount_auth_and_storage(edge: Edge, settings: Settings) -> None:
    """The project's Auth and Storage APIs, in this process (auth.py, storage.py)."""
    from .auth import AuthUpstream
    from .apis import TenantDirectory
    from .storage import StorageUpstream

    directory = TenantDirectory(settings, ttl_s=settings.project_apis_cache_ttl_s,
                                pool_idle_s=settings.project_apis_pool_idle_s)
    edge.mount(AuthUpstream(settings, directory))
    edge.mount(StorageUpstream(settings, directory))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    edge = build_edge(settings)

    async def serve() -> None:
        runner = web.AppRunner(edge.web_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.edge_host, settings.edge_port, reuse_address=True, backlog=1024)
        await site.start()
        print(json.dumps({"edge": f"http://{settings.edge_host}:{settings.edge_port}",
                          "apis": sorted(edge.upstreams)}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
