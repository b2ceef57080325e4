"""The usage meter every counting process shares (the gateway, the project edge, the realtime
server): counts per project, metric and minute in memory, and hands them to the process's
usage outbox in batches (one save per flush, never one per event), each batch one stored
event the relay publishes (the gateway's as `api_usage_recorded`, realtime's as
`realtime_usage_recorded`), which metering folds exactly once.

Counters add up within a minute; levels (`level()`, e.g. realtime's peak concurrent
connections) keep the minute's highest value, as metering's gauges do over a period.
A background thread saves what was counted every `flush_interval` seconds or as soon as
`max_records` records wait; stopping flushes what is left, so a clean shutdown loses nothing.

Standard library only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Iterator, Protocol

log = logging.getLogger("services.shared.usage")

Key = tuple[str, str, str, int]  # (org_slug, project_ref, metric, minute)


class BatchSink(Protocol):
    def record_batch(self, records: list[dict[str, Any]]) -> None: ...


class OrgDirectory:
    """Which organization a project belongs to (it never changes), remembered per process;
    a ref that is no project is remembered as such for a while."""

    def __init__(self, missing_ttl: float = 60.0, max_missing: int = 10_000):
        self.orgs: dict[str, str] = {}
        self.missing: dict[str, float] = {}
        self.missing_ttl = missing_ttl
        self.max_missing = max_missing

    def org_of(self, ref: str, lookup: Callable[[str], str]) -> str | None:
        org = self.orgs.get(ref)
        if org is not None:
            return org
        until = self.missing.get(ref)
        if until is not None and until > time.monotonic():
            return None
        try:
            org = lookup(ref)
        except Exception as e:  # noqa: BLE001 -- NotFound (no such project) or the service is away
            if type(e).__name__ == "NotFound" or getattr(e, "exc_type", None) == "NotFound":
                if len(self.missing) >= self.max_missing:
                    self.missing.clear()
                self.missing[ref] = time.monotonic() + self.missing_ttl
            else:
                log.warning("could not find the organization of project %s: %s", ref, e)
            return None
        self.orgs[ref] = org
        return org


class UsageMeter:
    def __init__(self, sink: BatchSink, *, flush_interval: float = 1.0, max_records: int = 5000,
                 clock: Callable[[], float] = time.time, levels: frozenset[str] = frozenset()):
        self.sink = sink
        self.levels = levels  # metrics whose minute keeps the highest value, not the sum
        self.flush_interval = flush_interval
        self.max_records = max_records
        self.clock = clock
        self.directory = OrgDirectory()
        self.pending: dict[Key, int] = defaultdict(int)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.flushed_records = 0

    def count(self, org: str, ref: str, metric: str, quantity: int, at: float | None = None) -> None:
        """Add `quantity` to the project's counter `metric` for the current minute."""
        if quantity <= 0:
            return
        t = int(self.clock() if at is None else at)
        with self.lock:
            self.pending[(org, ref, metric, t - t % 60)] += quantity
            full = len(self.pending) >= self.max_records
        if full:
            self.wake.set()

    def level(self, org: str, ref: str, metric: str, value: int, at: float | None = None) -> None:
        """Note a level (a gauge): the minute keeps the highest value seen."""
        t = int(self.clock() if at is None else at)
        key = (org, ref, metric, t - t % 60)
        with self.lock:
            if value > self.pending.get(key, -1):
                self.pending[key] = value
            full = len(self.pending) >= self.max_records
        if full:
            self.wake.set()

    def _merge_back(self, key: Key, value: int) -> None:
        if key[2] in self.levels:
            self.pending[key] = max(self.pending.get(key, 0), value)
        else:
            self.pending[key] += value

    def add(self, org: str, ref: str, *, requests: int, egress: int, at: float | None = None) -> None:
        t = int(self.clock() if at is None else at)
        minute = t - t % 60
        with self.lock:
            if requests:
                self.pending[(org, ref, "api_requests", minute)] += requests
            if egress:
                self.pending[(org, ref, "egress_bytes", minute)] += egress
            full = len(self.pending) >= self.max_records
        if full:
            self.wake.set()

    # -- batching --------------------------------------------------------------------------------
    def flush(self) -> int:
        """Save everything counted so far, in batches of at most `max_records` records.
        Returns how many records were saved. If a save fails, what it held is counted
        again as pending (nothing is dropped) and the error propagates."""
        with self.lock:
            taken, self.pending = self.pending, defaultdict(int)
        if not taken:
            return 0
        saved = 0
        batches = list(batches_of(taken, self.max_records))
        for i, (records, keys) in enumerate(batches):
            try:
                self.sink.record_batch(records)
            except Exception:
                with self.lock:
                    for later in batches[i:]:
                        for k in later[1]:
                            self._merge_back(k, taken[k])
                raise
            saved += len(keys)
        self.flushed_records += saved
        return saved

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="usage-flusher", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(self.flush_interval)
            self.wake.clear()
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 -- keep counting; the next flush retries
                log.warning("usage flush failed (kept for the next one): %s", e)
                self.stopping.wait(min(self.flush_interval, 1.0))

    def close(self) -> None:
        """Stop the flusher, save what is left, close the outbox."""
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        try:
            self.flush()
        except Exception:
            with self.lock:
                lost = len(self.pending)
            log.exception("usage flush at shutdown failed: %d usage records lost", lost)
        close = getattr(self.sink, "close", None)
        if callable(close):
            close()


def batches_of(counts: dict[Key, int], max_records: int) -> Iterator[tuple[list[dict[str, Any]], list[Key]]]:
    """The usage batch payload records for these counts, in chunks of at most
    `max_records`; with the keys each chunk carries."""
    keys = sorted(counts)
    for i in range(0, len(keys), max_records):
        chunk = keys[i:i + max_records]
        yield [{"org_id": k[0], "project_ref": k[1], "metric": k[2], "minute": k[3], "quantity": counts[k]}
               for k in chunk], chunk


