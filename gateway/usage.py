"""The gateway's usage meter: counts API requests and egress bytes per project and minute on
project-scoped requests, and hands the counts to the usage outbox in batches.

Imports werkzeug, eventsourcing (through the outbox) and the standard library. Counting is
a dict update in the request's path; a background thread (a green one in the nameko
process) saves what was counted every `usage_flush_interval_ms` or as soon as
`usage_batch_max_records` records wait, one batch per save, never a message per request.
Stopping flushes what is left, so a clean shutdown loses nothing.

Which requests count here: paths naming a project (/v1/projects/<ref>...,
/platform/projects/<ref>...) whose answer is neither 404 (no such project, or not yours) nor
401 (not signed in). The project APIs are counted by the project edge (gateway/edge/app.py)
with this same meter: every answer but a 404. The project's organization comes from the
projects service once per project and process.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator, Protocol

from werkzeug.wrappers import Request, Response

log = logging.getLogger("gateway.usage")

PROJECT_PATH = re.compile(r"^/(v1/projects|platform/projects)/([a-z]{20})(?:/|$)")
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
                 clock: Callable[[], float] = time.time):
        self.sink = sink
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

    # -- counting --------------------------------------------------------------------------------
    def observe(self, request: Request, response: Response, lookup: Callable[[str], str]) -> Response:
        """Count one answered request; returns the response (wrapped if it is streamed, to
        count the bytes actually sent)."""
        m = PROJECT_PATH.match(request.path)
        if m is None or response.status_code in (401, 404):
            return response
        org = self.directory.org_of(m.group(2), lookup)
        if org is None:
            return response
        ref = m.group(2)
        if request.method == "HEAD":
            self.add(org, ref, requests=1, egress=0)
            return response
        if response.is_sequence:
            self.add(org, ref, requests=1, egress=sum(len(chunk) for chunk in response.iter_encoded()))
            return response
        # Streamed (e.g. a file download): count the bytes as they leave. Never
        # calculate_content_length() here: it would read the whole stream into memory.
        self.add(org, ref, requests=1, egress=0)
        response.response = self._counting(response.response, org, ref)
        return response

    def _counting(self, body: Iterable[Any], org: str, ref: str) -> Iterator[Any]:
        sent = 0
        try:
            for chunk in body:
                sent += len(chunk.encode() if isinstance(chunk, str) else chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if callable(close):
                close()
            self.add(org, ref, requests=0, egress=sent)

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
                            self.pending[k] += taken[k]
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
    """The api_usage_recorded payload records for these counts, in chunks of at most
    `max_records`; with the keys each chunk carries."""
    keys = sorted(counts)
    for i in range(0, len(keys), max_records):
        chunk = keys[i:i + max_records]
        yield [{"org_id": k[0], "project_ref": k[1], "metric": k[2], "minute": k[3], "quantity": counts[k]}
               for k in chunk], chunk


def build_meter(settings: Any) -> UsageMeter:
    """The meter of a gateway process, saving to its usage outbox, flusher running."""
    from services.shared.eventstore import open_application

    from .usage_outbox import UsageOutbox

    # One thread saves, about once a second: one connection is plenty.
    meter = UsageMeter(open_application(UsageOutbox, settings, pool_size=1, max_overflow=1),
                       flush_interval=settings.usage_flush_interval_ms / 1000,
                       max_records=settings.usage_batch_max_records)
    meter.start()
    return meter
