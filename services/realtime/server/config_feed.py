"""The live ConfigSource of the realtime server: each project's settings read from the
realtime service's own read model (`realtime.project_config`) on first use, and every change
heard on `LISTEN realtime_config`, which the service notifies in the transaction of the change
(services/realtime/config_views.py), so a committed change reaches the server in milliseconds.

Why LISTEN/NOTIFY on realtime's own schema and not the broker: the server is part of the
realtime service and may read its schema; the notice is sent by the very transaction that
stores the change (nothing to lose between the two, no relay in the path), and it needs no
queue per server process. Surviving outages: notices sent while the listening connection is
down are lost by PostgreSQL's design, so after every (re)connect the feed reads again every
project it holds and applies what changed, by version; broker restarts do not concern it.

Plain threads and psycopg (no eventlet, no asyncio needed): the listener runs in one daemon
thread; callbacks run on the server's event loop when one is given (`loop=`), so server code
never sees another thread. Imports psycopg and the shared settings shape only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, Callable

import psycopg
from psycopg.rows import dict_row

from ..config import DEFAULT, RealtimeConfig
from ..config_views import CHANNEL

log = logging.getLogger(__name__)

SELECT = "SELECT ref, version, settings, shutdowns FROM realtime.project_config WHERE ref = ANY(%s)"
FIELDS = set(DEFAULT.as_dict())

ChangeCallback = Callable[[str, RealtimeConfig], None]
ShutdownCallback = Callable[[str], None]


def _config(settings: dict[str, Any]) -> RealtimeConfig:
    return DEFAULT.updated(**{k: v for k, v in settings.items() if k in FIELDS})


class ConfigFeed:
    """ConfigSource (services/realtime/config.py) plus `on_shutdown(cb)`: `cb(ref)` once per
    shutdown asked for after the feed first read the project (the server then disconnects
    every client of the project)."""

    def __init__(self, conninfo: str, *, loop: asyncio.AbstractEventLoop | None = None,
                 retry_s: float = 0.5, poll_s: float = 1.0):
        self.conninfo = conninfo
        self.loop = loop
        self.retry_s = retry_s
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._configs: dict[str, RealtimeConfig] = {}
        self._versions: dict[str, int] = {}
        self._shutdowns: dict[str, int] = {}
        self._on_change: list[ChangeCallback] = []
        self._on_shutdown: list[ShutdownCallback] = []
        self._reader: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()  # the listener is listening (tests and health)
        self.reconnects = 0

    # -- ConfigSource --------------------------------------------------------------------------
    def get(self, ref: str) -> RealtimeConfig:
        """The project's settings; read from the store the first time (one indexed query),
        then kept up to date by the listener. A store that cannot be reached gives the
        defaults for now, and the listener's next reconnect reads the project again."""
        with self._lock:
            known = self._configs.get(ref)
        if known is not None:
            return known
        try:
            rows = self._select([ref])
        except psycopg.Error as exc:
            log.warning("realtime settings of %s unavailable (%s): defaults until the store answers", ref,
                        type(exc).__name__)
            with self._lock:
                self._configs.setdefault(ref, DEFAULT)
                self._versions.setdefault(ref, -1)  # read again on reconnect
                return self._configs[ref]
        row = rows.get(ref)
        with self._lock:
            if ref not in self._configs:  # the listener may have got there first
                self._configs[ref] = _config(row["settings"]) if row else DEFAULT
                self._versions[ref] = row["version"] if row else 0
                self._shutdowns[ref] = row["shutdowns"] if row else 0
            return self._configs[ref]

    def on_change(self, callback: ChangeCallback) -> None:
        self._on_change.append(callback)

    def on_shutdown(self, callback: ShutdownCallback) -> None:
        self._on_shutdown.append(callback)

    def forget(self, ref: str) -> None:
        """The server holds no client of the project any more: stop keeping its settings."""
        with self._lock:
            for d in (self._configs, self._versions, self._shutdowns):
                d.pop(ref, None)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "ConfigFeed":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="realtime-config-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # -- the listener --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    self._refresh(None)  # whatever changed while nobody listened
                    while not self._stop.is_set():
                        refs = set()
                        for n in conn.notifies(timeout=self.poll_s):
                            try:
                                refs.add(str(json.loads(n.payload)["ref"]))
                            except (ValueError, KeyError, TypeError):
                                continue
                        if refs:
                            self._refresh(refs)
            except psycopg.Error as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                self.reconnects += 1
                log.warning("realtime config feed lost its connection (%s); listening again in %.1fs",
                            type(exc).__name__, self.retry_s)
                self._stop.wait(self.retry_s)
        self.connected.clear()

    def _refresh(self, refs: set[str] | None) -> None:
        """Read these projects (None: every project held) and apply what is newer."""
        with self._lock:
            held = set(self._configs)
        wanted = held if refs is None else refs & held
        if not wanted:
            return
        rows = self._select(sorted(wanted))
        changes: list[tuple[str, RealtimeConfig]] = []
        shutdowns: list[str] = []
        with self._lock:
            for ref in wanted:
                row = rows.get(ref)
                if row is None or ref not in self._configs or row["version"] <= self._versions.get(ref, 0):
                    continue
                config = _config(row["settings"])
                if config != self._configs[ref]:
                    changes.append((ref, config))
                if row["shutdowns"] > self._shutdowns.get(ref, 0) and self._versions.get(ref, 0) >= 0:
                    shutdowns.append(ref)
                self._configs[ref], self._versions[ref] = config, row["version"]
                self._shutdowns[ref] = row["shutdowns"]
        for ref, config in changes:
            for cb in self._on_change:
                self._call(cb, ref, config)
        for ref in shutdowns:
            for scb in self._on_shutdown:
                self._call(scb, ref)

    def _select(self, refs: list[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            reader = self._reader
            self._reader = None  # taken: one user at a time
        try:
            if reader is None or reader.closed:
                reader = psycopg.connect(self.conninfo, autocommit=True, row_factory=dict_row)  # type: ignore[arg-type]
            rows = reader.execute(SELECT, (refs,)).fetchall()  # type: ignore[union-attr]
        except psycopg.Error:
            if reader is not None:
                reader.close()
            raise
        with self._lock:
            if self._reader is None:
                self._reader = reader
            else:
                reader.close()
        return {r["ref"]: r for r in rows}

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)
            return
        try:
            fn(*args)
        except Exception:  # one broken callback must not stop the feed
            log.exception("realtime config callback failed")

