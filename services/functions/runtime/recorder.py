"""What invocations leave behind: invocation records (saved as events, so each becomes a
`function_invoked` usage event through the outbox) and log lines, written in batches.

Never losing a record, without making callers wait for the database:
1. Each record is first appended to a local journal (one write to the page cache, a few
   microseconds) with a sequence number. A killed runtime loses nothing it has journaled.
2. A writer thread saves records in order, many per transaction (a busy runtime writes
   hundreds at once), as an InvocationBatch whose id derives from its first sequence number,
   then checkpoints the journal.
3. On start, records after the checkpoint are saved again; a batch the previous run had
   already stored is recognised by its id and not stored twice.
A failed write is retried with backoff. Log lines are not usage: past a bound they are shed
oldest first, and counted.

asyncio in front, one writer thread behind (psycopg and eventsourcing block).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable

log = logging.getLogger("functions.recorder")

MAX_LOG_BACKLOG = 100_000
JOURNAL_ROTATE_BYTES = 8 * 1024 * 1024

SaveBatch = Callable[[list[dict[str, Any]], int], int]  # (records, first_seq) -> how many were already stored


class Journal:
    """Append-only JSON lines of invocation records, plus the sequence number up to which
    they are stored (checkpoint). Not fsynced: it covers the process dying, not the machine."""

    def __init__(self, directory: Path, name: str):
        directory.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        self.path = directory / f"{safe}.jsonl"
        self.checkpoint_path = directory / f"{safe}.checkpoint"
        self.next_seq = 1
        self.committed = 0
        # Names this journal's numbering: a new journal (a wiped state dir) gets a new epoch,
        # so its sequence numbers never collide with batches an old one stored.
        self.epoch = os.urandom(6).hex()
        self._file: IO[str] | None = None

    def recover(self) -> list[tuple[int, dict[str, Any]]]:
        """Records journaled but not yet known to be stored, in order."""
        if self.checkpoint_path.exists():
            epoch, _, committed = self.checkpoint_path.read_text().strip().partition(" ")
            self.epoch, self.committed = epoch, int(committed or 0)
        else:
            self.commit(0)
        pending = []
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        seq, record = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by the crash: never acknowledged to anyone
                    self.next_seq = max(self.next_seq, seq + 1)
                    if seq > self.committed:
                        pending.append((seq, record))
        self.next_seq = max(self.next_seq, self.committed + 1)
        self._file = open(self.path, "a", encoding="utf-8")
        return pending

    def append(self, record: dict[str, Any]) -> int:
        assert self._file is not None, "recover() first"
        seq = self.next_seq
        self.next_seq += 1
        self._file.write(json.dumps([seq, record], separators=(",", ":")) + "\n")
        self._file.flush()
        return seq

    def commit(self, seq: int) -> None:
        """Everything up to `seq` is stored (called from the writer thread)."""
        self.committed = seq
        tmp = self.checkpoint_path.with_suffix(".tmp")
        tmp.write_text(f"{self.epoch} {seq}")
        os.replace(tmp, self.checkpoint_path)

    def maybe_rotate(self) -> None:
        """Start a fresh journal once everything in it is stored (called on the loop)."""
        if self._file is None or self.committed < self.next_seq - 1:
            return
        if self._file.tell() < JOURNAL_ROTATE_BYTES:
            return
        self._file.close()
        self._file = open(self.path, "w", encoding="utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Recorder:
    def __init__(self, save_batch: SaveBatch, save_logs: Callable[[list[dict[str, Any]]], None], journal: Journal,
                 *, max_batch: int = 1000):
        self.save_batch = save_batch
        self.save_logs = save_logs
        self.journal = journal
        self.max_batch = max_batch
        self._records: deque[tuple[int, dict[str, Any]]] = deque()
        self._logs: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.recovered = 0
        self.logs_written = 0
        self.logs_shed = 0
        self.failures = 0

    def start(self) -> None:
        pending = self.journal.recover()
        self.recovered = len(pending)
        if pending:
            log.info("recorder: %d invocation records from the journal to store", len(pending))
        self._records.extend(pending)
        self._task = asyncio.create_task(self._run())

    async def close(self, timeout: float = 30.0) -> None:
        """Write everything still buffered (a graceful stop leaves nothing for recovery)."""
        self._closing = True
        self._wake.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, timeout)
            except asyncio.TimeoutError:
                log.error("recorder: %d invocation records left in the journal for the next start", len(self._records))
        self.journal.close()

    @property
    def backlog(self) -> int:
        return len(self._records)

    # -- intake --------------------------------------------------------------------------------
    def invocation(self, record: dict[str, Any]) -> None:
        """Journal one invocation record; it is stored in the background."""
        self._records.append((self.journal.append(record), record))
        self._wake.set()

    def log(self, ref: str, slug: str, level: str, version: int | None, request_id: str | None, message: str,
            *, kind: str = "log", status: int | None = None, duration_ms: float | None = None,
            at: datetime | None = None) -> None:
        if len(self._logs) >= MAX_LOG_BACKLOG:
            self._logs.popleft()
            self.logs_shed += 1
        self._logs.append({"ref": ref, "slug": slug, "at": at or datetime.now(timezone.utc), "level": level,
                           "kind": kind, "version": version, "request_id": request_id, "status": status,
                           "duration_ms": duration_ms, "message": message})
        self._wake.set()

    # -- the writer ----------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._records and not self._logs:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            # No waiting for company: while one write is in flight the next batch gathers by
            # itself, so batches grow with load and an idle runtime writes at once.
            records = [self._records[i] for i in range(min(len(self._records), self.max_batch))]
            logs = [self._logs.popleft() for _ in range(min(len(self._logs), self.max_batch * 5))]
            try:
                await asyncio.to_thread(self._write, records, logs)
            except Exception as exc:  # noqa: BLE001 -- keep everything and try again
                self.failures += 1
                log.warning("recorder: write failed (%s); retrying in %.2fs", exc, backoff)
                self._logs.extendleft(reversed(logs))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            for _ in records:
                self._records.popleft()
            self.written += len(records)
            self.logs_written += len(logs)
            self.journal.maybe_rotate()

    def _write(self, records: list[tuple[int, dict[str, Any]]], logs: list[dict[str, Any]]) -> None:
        t0 = time.monotonic()
        todo = records
        while todo:
            already = self.save_batch([r for _, r in todo], todo[0][0])
            # A previous run stored the first `already` of these (same batch id): skip them.
            todo = todo[already:] if already else []
        if records:
            self.journal.commit(records[-1][0])
        if logs:
            self.save_logs(logs)
        took = time.monotonic() - t0
        if took > 1.0:
            log.warning("recorder: a write of %d records and %d log lines took %.1fs", len(records), len(logs), took)
