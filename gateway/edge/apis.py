"""What the project's Auth and Storage APIs (auth.py, storage.py) share inside the project edge: the tenant
directory (JWT secret, keys, auth settings and the API's database login of a project, over
RPC, cached a few seconds), per-tenant connection pools opened on demand and closed when idle,
and the caller's JWT.

Plain asyncio; nameko only inside a worker thread (the standalone RPC proxy). Imports
aiohttp, psycopg, PyJWT, the standard library and shared settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import jwt
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from services.shared.settings import Settings

from services.shared.tenants import StandaloneRpc

log = logging.getLogger("gateway.edge.apis")

API_ROLES = ("anon", "authenticated", "service_role")


class Gone(Exception):
    """The project does not exist (any more)."""


class RpcThread(StandaloneRpc):
    """Calls to the platform's services (see StandaloneRpc); NotFound and Gone come out as Gone."""

    def final(self, exc: BaseException) -> bool:
        return type(exc).__name__ in ("NotFound", "Gone")

    def call_sync(self, service: str, method: str, *args: Any) -> Any:
        try:
            return self.call_service(service, method, *args)
        except Exception as exc:  # noqa: BLE001
            if self.final(exc):
                raise Gone(str(exc)) from None
            raise

    async def call(self, service: str, method: str, *args: Any) -> Any:
        return await asyncio.to_thread(self.call_sync, service, method, *args)


Fetch = Callable[[str, str, tuple[Any, ...]], Any]


class TenantDirectory:
    """A project's secrets and settings for its APIs, cached `ttl_s` (a rotation or a changed
    setting takes effect within it), and a connection pool per (project, API) login that
    holds no connection when idle and is dropped after `pool_idle_s` unused."""

    def __init__(self, settings: Settings, rpc: RpcThread | None = None, *, ttl_s: float = 5.0,
                 pool_idle_s: float = 60.0, pool_max: int = 4):
        self.settings = settings
        self.rpc = rpc or RpcThread(settings)
        self.ttl_s = ttl_s
        self.pool_idle_s = pool_idle_s
        self.pool_max = pool_max
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._pending: dict[tuple[str, ...], asyncio.Future[Any]] = {}
        self._pools: dict[tuple[str, str], tuple[AsyncConnectionPool, float]] = {}
        self._users = 0

    def acquire(self) -> "TenantDirectory":
        """Each API sharing the directory holds it; the last `release` closes it."""
        self._users += 1
        return self

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.close()

    async def _cached(self, key: tuple[str, ...], service: str, method: str, *args: Any,
                      ttl: float | None = None) -> Any:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < (self.ttl_s if ttl is None else ttl):
            return hit[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            value = await self.rpc.call(service, method, *args)
            self._cache[key] = (time.monotonic(), value)
            fut.set_result(value)
            return value
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._pending.pop(key, None)

    def prime(self, ref: str, tenant: Any) -> None:
        """What the edge already knows of the project (its Tenant): no RPC of our own for it."""
        if tenant is None:
            return
        now = time.monotonic()
        self._cache[("creds", ref)] = (now, {"jwt_secret": tenant.jwt_secret, "anon_key": tenant.anon_key,
                                             "service_role_key": tenant.service_role_key})
        self._cache[("auth", ref)] = (now, {**dict(tenant.auth_config or {}), "status": tenant.status})

    async def credentials(self, ref: str) -> dict[str, str]:
        return dict(await self._cached(("creds", ref), "projects", "get_tenant_credentials", ref))

    async def auth_config(self, ref: str) -> dict[str, Any]:
        return dict(await self._cached(("auth", ref), "projects", "get_tenant_auth_config", ref))

    async def pool(self, ref: str, service: str) -> AsyncConnectionPool:
        self._sweep()
        key = (ref, service)
        found = self._pools.get(key)
        if found is not None:
            self._pools[key] = (found[0], time.monotonic())
            return found[0]
        # The login changes only with the project's roles: cache it as long as the pool lives.
        login = await self._cached(("login", ref, service), "provisioner", "get_tenant_login", ref, service,
                                   ttl=3600.0)
        found = self._pools.get(key)
        if found is not None:
            return found[0]
        pool = AsyncConnectionPool(
            kwargs={"host": login["host"], "port": login["port"], "dbname": login["dbname"], "user": login["user"],
                    "password": login["password"], "autocommit": True, "connect_timeout": 5,
                    "application_name": f"supaplatform-{service}"},
            # Checked when handed out: a pause kills the project's sessions, and a restore
            # must not meet a dead one (a loopback round trip).
            check=AsyncConnectionPool.check_connection,
            min_size=0, max_size=self.pool_max, max_idle=self.pool_idle_s, open=False, timeout=5.0,
            num_workers=1, name=f"{service}:{ref}")
        await pool.open(wait=False)
        self._pools[key] = (pool, time.monotonic())
        return pool

    def forget_pool(self, ref: str, service: str) -> None:
        """A pool whose connections broke (project paused, login changed): open anew next time."""
        found = self._pools.pop((ref, service), None)
        self._cache.pop(("login", ref, service), None)
        if found is not None:
            asyncio.get_running_loop().create_task(found[0].close())

    def _sweep(self) -> None:
        now = time.monotonic()
        for key, (pool, used) in list(self._pools.items()):
            if now - used > self.pool_idle_s:
                del self._pools[key]
                asyncio.get_running_loop().create_task(pool.close())

    async def close(self) -> None:
        pools = [p for p, _ in self._pools.values()]
        self._pools.clear()
        for pool in pools:
            with contextlib.suppress(Exception):
                await pool.close()
        await asyncio.to_thread(self.rpc.close)


@dataclass
class Caller:
    """Who calls: the role and claims of the JWT in Authorization (or the apikey)."""

    role: str
    claims: dict[str, Any]
    token: str

    @property
    def user_id(self) -> str | None:
        sub = self.claims.get("sub")
        return sub if isinstance(sub, str) and self.role == "authenticated" else None


class OpenPaths:
    """`rest in OpenPaths(test)`: the edge's `open_paths` (reachable without the project's
    key), decided by a predicate on the path after the prefix."""

    def __init__(self, test: Callable[[str], bool]):
        self.test = test

    def __contains__(self, rest: object) -> bool:
        return isinstance(rest, str) and self.test(rest)

    def __iter__(self) -> Any:
        return iter(())


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    key = request.headers.get("apikey", "").strip()
    return key or None


def decode(token: str, secret: str) -> dict[str, Any]:
    """Claims of a JWT signed with the project's secret; jwt.InvalidTokenError otherwise."""
    claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False, "require": ["exp"]})
    if claims.get("role") not in API_ROLES:
        raise jwt.InvalidTokenError("unknown role")
    return dict(claims)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body, default=str).encode(), content_type="application/json",
                        headers=headers)

