"""The Postgres changes engine: per tenant with at least one subscriber, one session on the
tenant's database as its realtime login (REPLICATION, reaching only that database) holding
a temporary logical replication slot (pgoutput, publication `supabase_realtime`), polled
with `pg_logical_slot_get_binary_changes`; each change goes to the subscribers whose
bindings and filters match and whose role and claims may see the row under RLS.

Temporary slots belong to their session: a crash (even kill -9) or a pause that ends the
session drops the slot, so none leaks. Names are derived from the project ref, and a
restarted server takes over a name a dying session still holds.

Plain asyncio with psycopg's async connections. Imports psycopg, the standard library and
this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import psycopg
from psycopg import sql

from ..changes import ChangesRefused
from .changes import Binding, BindingError, TableInfo, new_text_row, passes, payload_data, parse_bindings
from .pgoutput import Change, Decoder, Relation

log = logging.getLogger("realtime.cdc")

PUBLICATION = "supabase_realtime"
POLL_SQL = ("SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes(%s, NULL, %s, "
            "'proto_version', '1', 'publication_names', %s)")


def slot_name(ref: str) -> str:
    """Deterministic per project: `supaplatform_rt_<ref>` (63 characters at most)."""
    safe = re.sub(r"[^a-z0-9_]", "_", ref.lower())[:40]
    return f"supaplatform_rt_{safe}"


@dataclass(frozen=True)
class CdcSettings:
    poll_interval_s: float = 0.02  # between empty polls; a poll that found changes polls again at once
    batch_changes: int = 2000  # upto_nchanges per poll
    idle_close_s: float = 30.0  # a tenant without subscribers keeps its slot this long
    info_ttl_s: float = 5.0  # catalog facts (primary key, RLS, privileges) cached this long
    reconnect_max_s: float = 5.0
    open_timeout_s: float = 25.0  # a join waits this long for the slot (the opening goes on for the next join)


Login = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class _Subscription:
    sub: Any
    bindings: list[Binding]


def _role_of(sub: Any) -> str:
    role = getattr(sub, "role", None) or (getattr(sub, "claims", None) or {}).get("role") or "anon"
    return str(role)


def _claims_of(sub: Any) -> dict[str, Any]:
    claims = getattr(sub, "claims", None)
    return dict(claims) if isinstance(claims, dict) else {}


class TenantStream:
    """One tenant's slot, poll loop and subscribers."""

    def __init__(self, ref: str, login: Login, settings: CdcSettings, on_empty: Callable[["TenantStream"], None]):
        self.ref = ref
        self.slot = slot_name(ref)
        self.login = login
        self.settings = settings
        self.on_empty = on_empty
        self.subs: list[_Subscription] = []
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.decoder = Decoder()
        self._start_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._opening: asyncio.Task[None] | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._info: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self.closed = False
        self.stats = {"polls": 0, "changes": 0, "sent": 0, "hidden": 0, "errors": 0, "last_error": None}

    # -- lifecycle ---------------------------------------------------------------------------
    async def ensure_started(self, timeout: float | None = None) -> None:
        """Returns once the slot exists: every change committed after this is delivered. The
        opening is shared by every join waiting for it, and goes on when one stops waiting
        (its timeout): the next join finds the slot open."""
        if self.conn is not None and not self.conn.closed and self._task is not None and not self._task.done():
            return
        if self._opening is None or self._opening.done():
            self._opening = asyncio.get_running_loop().create_task(self._start(), name=f"cdc-open:{self.ref}")
        await asyncio.wait_for(asyncio.shield(self._opening), timeout)

    async def _start(self) -> None:
        async with self._start_lock:
            if self.conn is None or self.conn.closed:
                await self._open()
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run(), name=f"cdc:{self.ref}")

    async def _open(self) -> None:
        t0 = time.monotonic()
        info = await self.login(self.ref)
        conn = await psycopg.AsyncConnection.connect(
            host=info["host"], port=info["port"], dbname=info["dbname"], user=info["user"],
            password=info.get("password"), autocommit=True, connect_timeout=5,
            application_name="supaplatform-realtime-cdc")
        try:
            await conn.execute("SET TimeZone = 'UTC'")
            await conn.execute("SET statement_timeout = 30000")
            await self._create_slot(conn)
        except BaseException:
            await conn.close()
            raise
        self.conn = conn
        self.decoder = Decoder()
        self._info.clear()
        log.info("cdc %s: slot %s open (%.0f ms)", self.ref, self.slot, (time.monotonic() - t0) * 1000)

    async def _create_slot(self, conn: psycopg.AsyncConnection[Any]) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                await conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput', true)", (self.slot,))
                return
            except psycopg.errors.DuplicateObject:
                if time.monotonic() > deadline:
                    raise
            # The name is taken: by a session of an earlier run of this server (killed, its
            # backend not yet gone), or a permanent slot someone left. Take it over.
            row = await (await conn.execute(
                "SELECT active_pid, temporary FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))).fetchone()
            if row is None:
                continue
            pid, temporary = row
            log.info("cdc %s: slot %s is held (pid %s, temporary %s): taking it over", self.ref, self.slot, pid, temporary)
            if pid is not None:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("SELECT pg_terminate_backend(%s, 2000)", (pid,))
            elif not temporary:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop polling and end the session: PostgreSQL drops the temporary slot with it."""
        self.closed = True
        for task in (self._opening, self._task, self._idle_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
            with contextlib.suppress(Exception):
                await self.conn.close()
            self.conn = None

    # -- subscribers -------------------------------------------------------------------------
    def add(self, sub: Any, bindings: list[Binding]) -> None:
        self.remove(sub)
        self.subs.append(_Subscription(sub, bindings))
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None

    def remove(self, sub: Any) -> bool:
        before = len(self.subs)
        self.subs = [s for s in self.subs if s.sub is not sub]
        if before and not self.subs and self._idle_task is None and not self.closed:
            self._idle_task = asyncio.get_running_loop().create_task(self._close_when_idle())
        return len(self.subs) != before

    async def _close_when_idle(self) -> None:
        await asyncio.sleep(self.settings.idle_close_s)
        if not self.subs:
            self._idle_task = None
            self.on_empty(self)
            await self.close()

    # -- the loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.1
        while not self.closed:
            try:
                if self.conn is None or self.conn.closed:
                    async with self._start_lock:
                        await self._open()
                    log.info("cdc %s: slot %s opened again", self.ref, self.slot)
                got = await self.poll_once()
                backoff = 0.1
                if not got:
                    await asyncio.sleep(self.settings.poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.stats["errors"] += 1
                self.stats["last_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("cdc %s: %s (retrying in %.1fs)", self.ref, self.stats["last_error"], backoff)
                if self.conn is not None and (self.conn.closed or self.conn.broken):
                    with contextlib.suppress(Exception):
                        await self.conn.close()
                    self.conn = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_max_s)

    async def poll_once(self) -> int:
        assert self.conn is not None
        cur = await self.conn.execute(POLL_SQL, (self.slot, self.settings.batch_changes, PUBLICATION))
        rows = await cur.fetchall()
        self.stats["polls"] += 1
        changes: list[Change] = []
        for lsn, data in rows:
            changes.extend(self.decoder.feed(data, lsn))
        if changes:
            self.stats["changes"] += len(changes)
            await self._route(changes)
        return len(rows)

    # -- routing -----------------------------------------------------------------------------
    async def _route(self, changes: list[Change]) -> None:
        # Who wants what: (change index, subscription) -> binding ids.
        wanted: list[tuple[Change, _Subscription, list[int]]] = []
        for change in changes:
            oids = {c.name: c.type_oid for c in change.relation.columns}
            row = new_text_row(change) if change.new is not None else {}
            for s in self.subs:
                ids = [b.id for b in s.bindings if b.wants(change)
                       and (b.filter is None or change.action == "DELETE" or passes(b.filter, row, oids))]
                if ids:
                    wanted.append((change, s, ids))
        if not wanted:
            return
        # RLS: one query per (table, role, claims), over the rows of this batch.
        visible: dict[tuple[Any, ...], set[tuple[str, ...]]] = {}
        groups: dict[tuple[Any, ...], list[Change]] = {}
        for change, s, _ids in wanted:
            info = await self._table_info(change.relation)
            if change.action == "DELETE" or not info.rls_enabled or not info.primary_key:
                continue
            if await self._bypasses_rls(_role_of(s.sub)):
                continue
            key = (change.relation.oid, _role_of(s.sub), json.dumps(_claims_of(s.sub), sort_keys=True))
            groups.setdefault(key, []).append(change)
        for key, group in groups.items():
            visible[key] = await self._visible(group[0].relation, key[1], key[2], group)
        for change, s, ids in wanted:
            info = await self._table_info(change.relation)
            role = _role_of(s.sub)
            selectable = await self._selectable(change.relation, role)
            if info.primary_key and not set(info.primary_key) <= selectable and change.action != "DELETE":
                data: dict[str, Any] = {"schema": change.relation.schema, "table": change.relation.table,
                                        "type": change.action, "errors": ["Error 401: Unauthorized"]}
            else:
                if (change.action != "DELETE" and info.rls_enabled and info.primary_key
                        and not await self._bypasses_rls(role)):
                    key = (change.relation.oid, role, json.dumps(_claims_of(s.sub), sort_keys=True))
                    pk = tuple(str(new_text_row(change).get(c)) for c in info.primary_key)
                    if pk not in visible.get(key, set()):
                        self.stats["hidden"] += 1
                        continue
                data = payload_data(change, info, selectable)
            try:
                await s.sub.deliver({"ids": ids, "data": data})
                self.stats["sent"] += 1
            except Exception as exc:  # noqa: BLE001  (a subscriber gone mid-send)
                log.debug("cdc %s: delivery failed: %s", self.ref, exc)

    async def _cached(self, key: tuple[Any, ...], load: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._info.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.settings.info_ttl_s:
            return hit[1]
        value = await load()
        self._info[key] = (time.monotonic(), value)
        return value

    async def _table_info(self, rel: Relation) -> TableInfo:
        async def load() -> TableInfo:
            assert self.conn is not None
            row = await (await self.conn.execute(
                "SELECT c.relrowsecurity, ARRAY(SELECT a.attname::text FROM pg_index i "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)) "
                "FROM pg_class c WHERE c.oid = %s", (rel.oid,))).fetchone()
            oids = sorted({c.type_oid for c in rel.columns})
            types = await (await self.conn.execute(
                "SELECT oid::int, typname::text FROM pg_type WHERE oid = ANY(%s::oid[])", (oids,))).fetchall()
            return TableInfo(tuple(row[1]) if row else (), bool(row[0]) if row else False, {o: n for o, n in types})
        return await self._cached(("table", rel), load)  # type: ignore[no-any-return]

    async def _bypasses_rls(self, role: str) -> bool:
        async def load() -> bool:
            assert self.conn is not None
            row = await (await self.conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = %s",
                                                 (role,))).fetchone()
            return bool(row and row[0])
        return await self._cached(("bypass", role), load)  # type: ignore[no-any-return]

    async def _selectable(self, rel: Relation, role: str) -> set[str]:
        async def load() -> set[str]:
            assert self.conn is not None
            try:
                rows = await (await self.conn.execute(
                    "SELECT attname::text FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
                    "AND has_column_privilege(%s, attrelid, attnum, 'SELECT')", (rel.oid, role))).fetchall()
            except psycopg.errors.UndefinedObject:  # no such role
                return set()
            return {r[0] for r in rows}
        return await self._cached(("cols", rel.oid, role), load)  # type: ignore[no-any-return]

    async def _visible(self, rel: Relation, role: str, claims: str, changes: list[Change]) -> set[tuple[str, ...]]:
        """The primary keys of these rows the role, with these claims, may select now."""
        assert self.conn is not None
        info = await self._table_info(rel)
        pk = info.primary_key
        types = {c.name: c.type_oid for c in rel.columns}
        keys = [[str(new_text_row(ch).get(c)) for ch in changes] for c in pk]
        ident = sql.Identifier
        # Each key cast to its column's type, spelled by format_type (the catalog's own quoting).
        casts = [sql.SQL(await self._type_sql(types[c])) for c in pk]
        query = sql.SQL("SELECT {out} FROM {tbl} t JOIN unnest({arrays}) AS k({knames}) ON {on}").format(
            out=sql.SQL(", ").join(sql.SQL("t.{}::text").format(ident(c)) for c in pk),
            tbl=sql.SQL("{}.{}").format(ident(rel.schema), ident(rel.table)),
            arrays=sql.SQL(", ").join(sql.SQL("{}::text[]").format(sql.Placeholder()) for _ in pk),
            knames=sql.SQL(", ").join(ident(f"k{i}") for i in range(len(pk))),
            on=sql.SQL(" AND ").join(
                sql.SQL("t.{col} = k.{k}::{typ}").format(col=ident(c), k=ident(f"k{i}"), typ=casts[i])
                for i, c in enumerate(pk)))
        try:
            async with self.conn.transaction(force_rollback=True):
                await self.conn.execute(sql.SQL("SET LOCAL ROLE {}").format(ident(role)))
                await self.conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
                rows = await (await self.conn.execute(query, keys)).fetchall()
        except psycopg.Error as exc:
            if self.conn.broken:
                raise
            log.info("cdc %s: RLS check as %s on %s.%s failed: %s", self.ref, role, rel.schema, rel.table,
                     str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return set()
        return {tuple(r) for r in rows}

    async def _type_sql(self, oid: int) -> str:
        async def load() -> str:
            assert self.conn is not None
            row = await (await self.conn.execute("SELECT format_type(%s::oid, NULL)", (oid,))).fetchone()
            return str(row[0]) if row else "text"
        return await self._cached(("type", oid), load)  # type: ignore[no-any-return]


class CdcProvider:
    """The server's ChangesProvider: `subscribe` returns the phx_reply's `postgres_changes`
    entries once the tenant's slot exists; `unsubscribe` forgets the subscriber, and a
    tenant without subscribers for `idle_close_s` gives its slot up."""

    def __init__(self, login: Login, settings: CdcSettings | None = None):
        self.login = login
        self.settings = settings or CdcSettings()
        self.streams: dict[str, TenantStream] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def _ref(sub: Any) -> str:
        return str(getattr(sub, "ref", None) or getattr(sub, "project_ref", None))

    @staticmethod
    def _config(sub: Any) -> list[Any]:
        return list(getattr(sub, "postgres_changes", None) or [])

    async def subscribe(self, sub: Any) -> list[dict[str, Any]]:
        try:
            bindings = parse_bindings(self._config(sub))
        except BindingError as exc:
            raise ChangesRefused(f"Unable to subscribe to changes with given parameters: {exc}") from None
        if not bindings:
            return []
        ref = self._ref(sub)
        tenant = getattr(sub, "tenant", None)
        if tenant is not None and not getattr(tenant, "live", True):
            raise ChangesRefused("Realtime was unable to connect to the project database: the project is not active")
        async with self._lock:
            stream = self.streams.get(ref)
            if stream is None or stream.closed:
                stream = TenantStream(ref, self.login, self.settings, self._forget)
                self.streams[ref] = stream
        stream.add(sub, bindings)
        try:
            await stream.ensure_started(self.settings.open_timeout_s)
        except (psycopg.Error, OSError, LookupError, asyncio.TimeoutError) as exc:
            stream.remove(sub)
            log.warning("cdc %s: could not open the replication slot: %s", ref,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise ChangesRefused("Realtime was unable to connect to the project database") from None
        except BaseException:
            stream.remove(sub)
            raise
        return [dict(b.reply) for b in bindings]

    async def unsubscribe(self, sub: Any) -> None:
        stream = self.streams.get(self._ref(sub))
        if stream is not None:
            stream.remove(sub)

    def _forget(self, stream: TenantStream) -> None:
        if self.streams.get(stream.ref) is stream:
            del self.streams[stream.ref]

    async def drop_tenant(self, ref: str) -> None:
        """The project is paused or deleted: stop at once (its sessions are ending anyway)."""
        stream = self.streams.pop(ref, None)
        if stream is not None:
            await stream.close()

    def describe(self) -> list[dict[str, Any]]:
        """Per tenant: slot, subscribers and counters (the admin panel's operator view)."""
        return [{"ref": ref, "slot": s.slot, "subscribers": len(s.subs), "connected": s.conn is not None,
                 **s.stats} for ref, s in self.streams.items()]

    async def close(self) -> None:
        for ref in list(self.streams):
            await self.drop_tenant(ref)


__all__ = ["BindingError", "CdcProvider", "CdcSettings", "TenantStream", "slot_name"]
