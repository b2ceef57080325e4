"""What the project edge and the realtime server know of each project: its status, JWT secret
and keys, PostgREST and auth settings, and how to reach its database (projects.edge_tenant
over RPC, cached `edge_tenant_ttl_s`), and the apikey/JWT checks made against that project's
secret. Shared by gateway/edge and services/realtime/server (neither may import the other).

A token that fails against a cached secret refreshes the project once (at most once a second
per project), so a rotated secret's new keys work at once. Unknown projects are remembered as
unknown for the same TTL: a flood of made-up refs is not a flood of RPCs.

Imports the standard library, PyJWT, shared settings; nameko only inside a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jwt

from services.shared.settings import Settings

log = logging.getLogger("services.shared.tenants")

LIVE = {"ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY"}


@dataclass(frozen=True)
class Tenant:
    """One project as the edge's upstreams see it. Never log it: it holds secrets."""

    ref: str
    status: str
    jwt_secret: str = field(repr=False)
    anon_key: str = field(repr=False)
    service_role_key: str = field(repr=False)
    postgrest: dict[str, Any]
    auth_config: dict[str, Any]
    db_host: str
    db_port: int
    db_name: str
    authenticator_user: str
    authenticator_password: str = field(repr=False)
    owner_user: str
    owner_password: str = field(repr=False)

    @property
    def live(self) -> bool:
        return self.status in LIVE

    def conninfo(self, user: str = "authenticator") -> str:
        """libpq conninfo for the tenant's database as its authenticator (PostgREST's login)
        or its owner."""
        login, pw = ((self.authenticator_user, self.authenticator_password) if user == "authenticator"
                     else (self.owner_user, self.owner_password))
        return (f"host={self.db_host} port={self.db_port} dbname={self.db_name} user='{login}' "
                f"password='{_q(pw)}'")


def _q(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def tenant_from(data: dict[str, Any], settings: Settings) -> Tenant:
    ref = data["ref"]
    conn = data.get("connection") or {}
    return Tenant(ref=ref, status=str(data.get("status", "")), jwt_secret=data["jwt_secret"],
                  anon_key=data["anon_key"], service_role_key=data["service_role_key"],
                  postgrest=dict(data.get("postgrest") or {}), auth_config=dict(data.get("auth") or {}),
                  db_host=str(conn.get("db_host") or settings.tenant_db_host),
                  db_port=int(conn.get("db_port") or settings.tenant_db_port),
                  db_name=str(conn.get("db_name") or ref), authenticator_user=f"authenticator.{ref}",
                  authenticator_password=str(data.get("authenticator_pass") or ""),
                  owner_user=str(conn.get("db_user") or f"postgres.{ref}"), owner_password=str(data.get("db_pass", "")))


def verify_jwt(token: str, tenant: Tenant) -> tuple[dict[str, Any] | None, str | None]:
    """(claims, None) when `token` is an HS256 JWT signed with this project's secret and not
    expired (and, when it names a project, names this one); else (None, why)."""
    try:
        claims = jwt.decode(token, tenant.jwt_secret, algorithms=["HS256"],
                            options={"verify_aud": False, "require": ["role"]})
    except jwt.ExpiredSignatureError:
        return None, "JWT expired"
    except jwt.InvalidTokenError as exc:
        return None, f"invalid JWT: {exc}"
    if claims.get("ref") not in (None, tenant.ref):
        return None, "invalid JWT: issued for another project"
    return dict(claims), None


class StandaloneRpc:
    """Calls to the platform's services from this asyncio process: one long-lived standalone
    proxy in a worker thread, one call at a time; a broken connection is reopened and the call
    tried once more, unless `final(exc)` says the error is the answer (NotFound)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._cm: Any = None
        self._proxy: Any = None

    def final(self, exc: BaseException) -> bool:
        return is_not_found(exc)

    def call_service(self, service: str, method: str, *args: Any) -> Any:
        from services.shared.nameko_ext import RemotePort, cluster_rpc

        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._proxy is None:
                        self._cm = cluster_rpc(self.settings, timeout=10)
                        self._proxy = self._cm.__enter__()
                    return getattr(RemotePort(getattr(self._proxy, service)), method)(*args)
                except Exception as exc:  # noqa: BLE001
                    if self.final(exc) or attempt == 2:
                        raise
                    self._reset()
            raise AssertionError("unreachable")

    def _reset(self) -> None:
        if self._cm is not None:
            with contextlib.suppress(Exception):
                self._cm.__exit__(None, None, None)
        self._cm = self._proxy = None

    def close(self) -> None:
        with self._lock:
            self._reset()


class ProjectsRpc(StandaloneRpc):
    """Calls to the projects service."""

    def call(self, method: str, *args: Any) -> Any:
        return self.call_service("projects", method, *args)


def is_not_found(exc: BaseException) -> bool:
    return type(exc).__name__ == "NotFound" or getattr(exc, "exc_type", None) == "NotFound"


class Tenants:
    """ref -> Tenant | None (unknown or deleted), cached `ttl` seconds; one fetch per ref at a time."""

    def __init__(self, settings: Settings, fetch: Callable[[str], dict[str, Any]], *, refresh_interval: float = 1.0):
        self.settings = settings
        self.refresh_interval = refresh_interval
        self.fetch = fetch
        self.ttl = settings.edge_tenant_ttl_s
        self._cache: dict[str, tuple[float, Tenant | None]] = {}
        self._inflight: dict[str, asyncio.Future[Tenant | None]] = {}
        self._refreshed: dict[str, float] = {}

    async def get(self, ref: str, *, refresh: bool = False) -> Tenant | None:
        hit = self._cache.get(ref)
        if hit is not None and not refresh and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        pending = self._inflight.get(ref)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Tenant | None] = asyncio.get_running_loop().create_future()
        self._inflight[ref] = fut
        try:
            try:
                t0 = time.monotonic()
                data = await asyncio.to_thread(self.fetch, ref)
                took = time.monotonic() - t0
                if took > 0.1:
                    log.info("looking project %s up took %.0f ms", ref, took * 1000)
                value: Tenant | None = tenant_from(data, self.settings)
            except Exception as exc:  # noqa: BLE001
                if not is_not_found(exc):
                    if hit is not None:  # the projects service is away: keep serving what we knew
                        log.warning("projects service unreachable for %s, using cached: %s", ref, exc)
                        fut.set_result(hit[1])
                        return hit[1]
                    fut.set_exception(exc)
                    raise
                value = None
            self._cache[ref] = (time.monotonic(), value)
            self._refreshed[ref] = time.monotonic()
            fut.set_result(value)
            return value
        finally:
            self._inflight.pop(ref, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # mark retrieved

    def may_refresh(self, ref: str) -> bool:
        return time.monotonic() - self._refreshed.get(ref, 0.0) >= self.refresh_interval

    def forget(self, ref: str) -> None:
        self._cache.pop(ref, None)
