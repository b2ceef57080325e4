"""What an invocation needs, cached in the runtime: the live version of each function and
its settings, each project's secrets (from the functions store), each project's JWT secret
and keys (from the projects service), where its database is, and each bundle unpacked.

Freshness:
- Functions and secrets: a listener thread LISTENs on the store's channel and reads each new
  notification; a deploy, rollback, delete or secret change drops exactly the entries it
  touches, typically within a millisecond of its commit. While that connection is down,
  nothing is cached.
- JWT secret and keys: kept `credentials_ttl_s` (5 s by default), so a rotation takes effect
  within that bound; a token that fails against a cached secret refreshes it once first, so
  new keys work at once.

Imports the standard library, psycopg, the service's application and bundles.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psycopg

from services.shared.errors import NotFound
from services.shared.eventstore import events_channel

from .. import bundles as B
from ..application import FunctionsApplication
from ..domain import Function, ProjectSecrets
from .workers import WorkerSpec

log = logging.getLogger("functions.resolver")

TENANT_TTL_S = 5.0
CredentialsFetch = Callable[[str], dict[str, str]]  # ref -> {jwt_secret, anon_key, service_role_key, db_pass}


class Resolver:
    def __init__(self, app: FunctionsApplication, fetch_credentials: CredentialsFetch, *, conninfo: str,
                 code_root: Path, project_url: Callable[[str], str], credentials_ttl_s: float):
        self.app = app
        self.fetch_credentials = fetch_credentials
        self.conninfo = conninfo
        self.code_root = code_root
        self.project_url = project_url
        self.credentials_ttl_s = credentials_ttl_s
        self.targets: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.tenants: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self.credentials: dict[str, tuple[float, dict[str, str]]] = {}
        self.code_dirs: dict[str, Path] = {}
        self._by_originator: dict[Any, tuple[str, ...]] = {}
        self._generation = 0
        self._caching = False  # only while the listener is connected
        self._inflight: dict[Any, asyncio.Future[Any]] = {}
        self._refreshed_at: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="functions-listen", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    # -- lookups -------------------------------------------------------------------------------
    async def target(self, ref: str, slug: str) -> dict[str, Any] | None:
        key = (ref, slug)
        if self._caching and key in self.targets:
            return self.targets[key]
        return await self._load(("target", key), lambda: self.app.invocation_target(ref, slug),
                                lambda v: self._remember_target(key, v))

    async def secrets_env(self, ref: str) -> dict[str, str]:
        if self._caching and ref in self.secrets:
            return self.secrets[ref]
        return await self._load(("secrets", ref), lambda: self.app.secrets_env(ref),
                                lambda v: self._remember_secrets(ref, v))

    async def tenant(self, ref: str) -> dict[str, Any] | None:
        hit = self.tenants.get(ref)
        if hit and time.monotonic() - hit[0] < TENANT_TTL_S:
            return hit[1]
        value = await self._load(("tenant", ref), lambda: self.app.tenant(ref), lambda v: None)
        self.tenants[ref] = (time.monotonic(), value)
        return value

    async def creds(self, ref: str, *, refresh: bool = False) -> dict[str, str]:
        """The project's JWT secret, keys and database password; NotFound when it is gone."""
        hit = self.credentials.get(ref)
        if hit and not refresh and time.monotonic() - hit[0] < self.credentials_ttl_s:
            return hit[1]
        value = await self._load(("creds", ref), lambda: self.fetch_credentials(ref), lambda v: None)
        self.credentials[ref] = (time.monotonic(), value)
        self._refreshed_at[ref] = time.monotonic()
        return value

    def may_refresh(self, ref: str) -> bool:
        """A failed token may refresh the project's secret at most once a second (bad tokens
        must not turn into a flood of RPCs)."""
        return time.monotonic() - self._refreshed_at.get(ref, 0.0) > 1.0

    async def code_dir(self, sha256: str) -> Path:
        path = self.code_dirs.get(sha256)
        if path is None:
            def unpack() -> Path:
                target = self.code_root / sha256
                return target if target.is_dir() else B.materialize(self.app.bundle(sha256), sha256, self.code_root)
            path = await self._load(("code", sha256), unpack, lambda v: None)
            self.code_dirs[sha256] = path
        return path

    async def worker_spec(self, target: dict[str, Any]) -> WorkerSpec:
        ref = target["ref"]
        creds, secrets, tenant, code = await asyncio.gather(
            self.creds(ref), self.secrets_env(ref), self.tenant(ref), self.code_dir(target["bundle_sha256"]))
        # Secrets first, then the platform's variables: a secret can never override them
        # (and names that would steer the runtime are refused, domain.reserved_secret_name).
        env = dict(secrets)
        env.update({"SUPABASE_URL": self.project_url(ref), "SUPABASE_ANON_KEY": creds["anon_key"],
                    "SUPABASE_SERVICE_ROLE_KEY": creds["service_role_key"]})
        db = None
        if tenant and tenant.get("db_host") and tenant.get("db_name"):
            # SUPABASE_DB_URL is made from this by the pool: sandboxed, it points at the
            # worker's database forwarder, which reaches only this database as this user.
            db = (str(tenant["db_host"]), int(tenant["db_port"] or 5432), str(tenant["db_name"]),
                  str(tenant["db_user"] or "postgres"), str(creds["db_pass"]))
        return WorkerSpec(ref=ref, slug=target["slug"], version=target["version"], code_dir=code,
                          entrypoint_path=target["entrypoint_path"], import_map_path=target["import_map_path"],
                          env=tuple(sorted(env.items())), db=db)

    # -- loading, once per key at a time -------------------------------------------------------
    async def _load(self, key: Any, fetch: Callable[[], Any], remember: Callable[[Any], None]) -> Any:
        fut = self._inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        generation = self._generation
        try:
            value = await asyncio.to_thread(fetch)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters get it, nobody warns
            raise
        finally:
            self._inflight.pop(key, None)
        # A change committed while we were reading may have been announced already: then
        # what we read could be stale, so use it for this call but do not keep it.
        if self._caching and generation == self._generation:
            remember(value)
        fut.set_result(value)
        return value

    def _remember_target(self, key: tuple[str, str], value: dict[str, Any] | None) -> None:
        self.targets[key] = value
        self._by_originator[Function.create_id(ref=key[0], slug=key[1])] = ("target", *key)

    def _remember_secrets(self, ref: str, value: dict[str, str]) -> None:
        self.secrets[ref] = value
        self._by_originator[ProjectSecrets.create_id(ref=ref)] = ("secrets", ref)

    # -- invalidation (called on the loop) ------------------------------------------------------
    def invalidate(self, originator_ids: set[Any]) -> None:
        self._generation += 1
        for oid in originator_ids:
            entry = self._by_originator.pop(oid, None)
            if entry is None:
                continue
            if entry[0] == "target":
                self.targets.pop((entry[1], entry[2]), None)
            else:
                self.secrets.pop(entry[1], None)

    def set_caching(self, on: bool) -> None:
        self._generation += 1
        self.targets.clear()
        self.secrets.clear()
        self._by_originator.clear()
        self._caching = on

    def _listen(self) -> None:
        """Follow the store's notification log; runs in its own thread."""
        assert self._loop is not None
        loop = self._loop
        channel = events_channel(FunctionsApplication)
        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, application_name="functions-runtime") as conn:
                    conn.execute(f"LISTEN {channel}")
                    last = self.app.recorder.max_notification_id() or 0
                    loop.call_soon_threadsafe(self.set_caching, True)
                    backoff = 0.2
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
                        while True:
                            batch = list(self.app.recorder.select_notifications(
                                start=last, limit=500, inclusive_of_start=False))
                            if not batch:
                                break
                            touched = {n.originator_id for n in batch if "InvocationBatch" not in n.topic}
                            if touched:
                                loop.call_soon_threadsafe(self.invalidate, touched)
                            last = batch[-1].id
            except Exception as exc:  # noqa: BLE001 -- keep following; cache nothing meanwhile
                if self._stop.is_set():
                    return
                loop.call_soon_threadsafe(self.set_caching, False)
                log.warning("listener fault (%s); reconnecting in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


def is_gone(exc: BaseException) -> bool:
    return isinstance(exc, NotFound) or type(exc).__name__ == "NotFound"
