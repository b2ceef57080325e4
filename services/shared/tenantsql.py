"""Runs SQL in a tenant's database as the tenant's own login (never a platform role), with
a statement timeout, a watchdog that cancels past it, and caps on rows and bytes. Shared by
the database service (SQL, migrations, table editor) and the realtime service (the
supabase_realtime publication). Imports psycopg and the standard library only."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import threading
import uuid
from dataclasses import dataclass
from contextlib import closing
from typing import Any, Callable
from urllib.parse import quote

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row


class QueryError(Exception):
    """The SQL failed: the message is PostgreSQL's own (safe to show to the tenant)."""


@dataclass(frozen=True)
class Limits:
    statement_timeout_ms: int = 15000
    max_rows: int = 10000
    max_bytes: int = 10 * 1024 * 1024
    connect_timeout_s: int = 5


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    dbname: str
    user: str
    password: str

    def conninfo(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user,
                "password": self.password}

    def url(self) -> str:
        """The same login as a libpq URL (what postgres-meta takes), every part quoted."""
        q = lambda v: quote(str(v), safe="")  # noqa: E731
        return f"postgresql://{q(self.user)}:{q(self.password)}@{q(self.host)}:{self.port}/{q(self.dbname)}"


def to_json(value: Any) -> Any:
    """A PostgreSQL value as Supabase's query API shows it in JSON."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return str(value)


def _param(value: Any) -> Any:
    # Parameters arrive as JSON: objects and arrays go as JSON text, the rest as they are.
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


class TenantSql:
    def __init__(self, limits: Limits):
        self.limits = limits

    def connect(self, target: Target, application_name: str) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(**target.conninfo(), connect_timeout=self.limits.connect_timeout_s,
                                   application_name=application_name, row_factory=dict_row)
        except psycopg.OperationalError as exc:
            raise QueryError(f"could not connect to the project's database: {_short(exc)}") from None

    def run(self, target: Target, query: str, parameters: list[Any] | None = None, *,
            read_only: bool = False, before_commit: Callable[[psycopg.Connection[Any]], None] | None = None
            ) -> list[dict[str, Any]]:
        """Run `query` in one transaction and return the last statement's rows. Any error,
        timeout or oversized result rolls the whole transaction back."""
        conn = self.connect(target, "supaplatform:query")
        # Closing without COMMIT is the rollback: PostgreSQL drops an unfinished transaction
        # with its session, even one whose results are still streaming.
        with closing(conn), self._watchdog(conn):
            try:
                conn.execute(f"SET statement_timeout = {int(self.limits.statement_timeout_ms)}")
                conn.execute("SET idle_in_transaction_session_timeout = "
                             f"{int(self.limits.statement_timeout_ms) * 2}")
                if read_only:
                    conn.execute("BEGIN READ ONLY")
                    # A query inside the transaction first: from here on it cannot be made
                    # read-write again (SET TRANSACTION READ WRITE must precede any query).
                    conn.execute("SELECT 1")
                    rows = self._single(conn, query, parameters or [])
                else:
                    conn.execute("BEGIN")
                    rows = self._any(conn, query, parameters)
                if before_commit is not None:
                    before_commit(conn)
                conn.execute("COMMIT")
                return rows
            except pgerrors.QueryCanceled as exc:
                raise QueryError(f"{_short(exc)} (the limit is {self.limits.statement_timeout_ms} ms); "
                                 "nothing was changed") from None
            except psycopg.Error as exc:
                raise QueryError(_short(exc)) from None

    def _single(self, conn: psycopg.Connection[Any], query: str, parameters: list[Any]) -> list[dict[str, Any]]:
        """One statement on the extended protocol, streamed row by row: a second statement is
        refused by PostgreSQL, and a huge result is stopped at the cap, not buffered."""
        cur = psycopg.RawCursor(conn, row_factory=dict_row)
        rows: list[dict[str, Any]] = []
        size = 0
        try:
            for row in cur.stream(query, [_param(p) for p in parameters]):
                out = {k: to_json(v) for k, v in row.items()}
                rows.append(out)
                size += len(json.dumps(out))
                self._check_caps(len(rows), size)
        except psycopg.ProgrammingError as exc:
            if "didn't produce a result" in str(exc) or "did not produce a result" in str(exc):
                return []  # a statement without rows (DDL, INSERT without RETURNING): it ran
            raise
        return rows

    def _any(self, conn: psycopg.Connection[Any], query: str, parameters: list[Any] | None) -> list[dict[str, Any]]:
        if parameters:
            return self._single(conn, query, parameters)
        conn.execute("SAVEPOINT sp_single")
        try:
            rows = self._single(conn, query, [])
            conn.execute("RELEASE SAVEPOINT sp_single")
            return rows
        except pgerrors.SyntaxError as exc:
            if "cannot insert multiple commands" not in str(exc):
                raise
            conn.execute("ROLLBACK TO SAVEPOINT sp_single")
        # Several statements: the simple protocol, where the last statement's rows count.
        cur = conn.cursor()
        cur.execute(query.encode(), prepare=False)
        last: list[dict[str, Any]] = []
        while True:
            if cur.description is not None:
                if (cur.rowcount or 0) > self.limits.max_rows:
                    raise QueryError(self._too_many())
                last = [{k: to_json(v) for k, v in r.items()} for r in cur.fetchall()]
                self._check_caps(len(last), len(json.dumps(last)))
            else:
                last = []
            if not cur.nextset():
                return last

    def _check_caps(self, rows: int, size: int) -> None:
        if rows > self.limits.max_rows:
            raise QueryError(self._too_many())
        if size > self.limits.max_bytes:
            raise QueryError(f"the result is larger than {self.limits.max_bytes} bytes: select fewer rows or "
                             "columns; nothing was changed")

    def _too_many(self) -> str:
        return (f"the result has more than {self.limits.max_rows} rows: add a LIMIT (or page with OFFSET); "
                "nothing was changed")

    def _watchdog(self, conn: psycopg.Connection[Any]) -> Any:
        """Cancel the backend a little after the statement timeout, whatever the SQL did to
        its own settings (a tenant may SET statement_timeout = 0 in a multi-statement query)."""
        limits = self.limits
        timer = threading.Timer(limits.statement_timeout_ms / 1000 + 2, conn.cancel_safe)

        class _Guard:
            def __enter__(self) -> None:
                timer.daemon = True
                timer.start()

            def __exit__(self, *exc: Any) -> None:
                timer.cancel()

        return _Guard()

    def statement(self, target: Target, query: Any, args: list[Any] | dict[str, Any] | None = None, *,
                  read_only: bool = False) -> list[dict[str, Any]]:
        """One platform-composed statement (identifiers quoted by psycopg.sql, values as
        parameters), in its own transaction, with the same limits."""
        conn = self.connect(target, "supaplatform:table-editor")
        with closing(conn), self._watchdog(conn):
            try:
                conn.execute(f"SET statement_timeout = {int(self.limits.statement_timeout_ms)}")
                conn.execute("BEGIN READ ONLY" if read_only else "BEGIN")
                cur = conn.execute(query, args)
                rows = []
                if cur.description is not None:
                    rows = [{k: to_json(v) for k, v in r.items()} for r in cur.fetchmany(self.limits.max_rows + 1)]
                    self._check_caps(len(rows), len(json.dumps(rows)))
                conn.execute("COMMIT")
                return rows
            except pgerrors.QueryCanceled as exc:
                raise QueryError(f"{_short(exc)} (the limit is {self.limits.statement_timeout_ms} ms)") from None
            except psycopg.Error as exc:
                raise QueryError(_short(exc)) from None

    def catalog(self, target: Target, query: str, args: dict[str, Any] | list[Any] | None = None
                ) -> list[dict[str, Any]]:
        """A platform-written catalog query (types, advisors, buckets), read-only, same limits."""
        conn = self.connect(target, "supaplatform:catalog")
        with closing(conn), self._watchdog(conn):
            try:
                conn.execute(f"SET statement_timeout = {int(self.limits.statement_timeout_ms)}")
                conn.execute("BEGIN READ ONLY")
                rows = conn.execute(query, args).fetchall()
                conn.execute("ROLLBACK")
                return [dict(r) for r in rows]
            except psycopg.Error as exc:
                raise QueryError(_short(exc)) from None

def _short(exc: Exception) -> str:
    """PostgreSQL's message as Supabase shows it: `ERROR: <sqlstate>: <message>`."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        state = getattr(exc, "sqlstate", None)
        return f"ERROR: {state}: {primary}" if state else f"ERROR: {primary}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
