"""The project edge's request log: one `edge_logs` record per answered project request, and an
`auth_logs` or `storage_logs` record for requests to those APIs, kept per project by the
database service (its logs explorer, `/analytics/endpoints/logs.all`). Records are batched in
memory (bounded: past `max_pending` they are dropped and counted, never block a request) and
saved about once a second by a plain thread through one RPC call per batch.

What is recorded is what Supabase's API gateway and GoTrue log: method, path (secrets in
query values redacted with gateway/logredact.py's rules, the same as every access log),
status, duration, request id. Never a header, a body or a key.

Imports the standard library, the gateway's redaction rules and (lazily) nameko's standalone
RPC through tenants.StandaloneRpc."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from ..logredact import redact

log = logging.getLogger("gateway.edge.requestlog")

# The upstream prefix -> the service log a request to it also goes to (besides edge_logs).
SERVICE_SOURCES = {"auth/v1": "auth_logs", "storage/v1": "storage_logs"}
# GoTrue's audit actions for the requests that change a session.
AUTH_ACTIONS = {("POST", "/token"): "login", ("POST", "/signup"): "user_signedup", ("POST", "/logout"): "logout",
                ("POST", "/recover"): "user_recovery_requested", ("PUT", "/user"): "user_modified"}


def records_for(ref: str, prefix: str, method: str, rest: str, query: str, status: int, duration_ms: float,
                request_id: str, peer: str | None, user_agent: str | None, at: float) -> list[dict[str, Any]]:
    """The log records of one answered request (pure)."""
    path = redact(f"/{prefix}{rest}" + (f"?{query}" if query else ""))
    service_path = redact(rest + (f"?{query}" if query else "")) or "/"
    level = "error" if status >= 500 else ("warning" if status >= 400 else "info")
    out = [{"ref": ref, "source": "edge_logs", "at": at, "severity": level.upper(),
            "message": f"{method} | {status} | {peer or '-'} | {request_id} | {path} | {user_agent or '-'}"[:2000],
            "attributes": {"identifier": ref, "request.method": method, "request.path": path,
                           "response.status_code": status, "request_id": request_id,
                           "duration_ms": round(duration_ms, 1)}}]
    source = SERVICE_SOURCES.get(prefix)
    if source is not None:
        attrs: dict[str, Any] = {"identifier": ref, "level": level, "method": method, "path": service_path,
                                 "status": status, "request_id": request_id, "duration": round(duration_ms * 1000)}
        msg = "request completed"
        action = AUTH_ACTIONS.get((method, rest.split("?", 1)[0])) if source == "auth_logs" else None
        if action is not None and status < 400:
            attrs["action"] = action
        attrs["msg"] = msg
        if status >= 400:
            attrs["error"] = f"status {status}"
        out.append({"ref": ref, "source": source, "at": at, "severity": level.upper(),
                    "message": json.dumps({"level": level, "method": method, "path": service_path, "status": status,
                                           "msg": msg, **({"action": action} if "action" in attrs else {})}),
                    "attributes": attrs})
    return out


class RequestLog:
    def __init__(self, sink: Callable[[list[dict[str, Any]]], Any], *, flush_interval: float = 1.0,
                 max_pending: int = 20000, max_batch: int = 2000):
        self.sink = sink
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.pending: list[dict[str, Any]] = []
        self.dropped = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, records: list[dict[str, Any]]) -> None:
        with self.lock:
            room = self.max_pending - len(self.pending)
            if room < len(records):
                self.dropped += len(records) - max(room, 0)
                records = records[:max(room, 0)]
            self.pending.extend(records)

    def flush(self) -> int:
        with self.lock:
            taken, self.pending = self.pending, []
        saved = 0
        for i in range(0, len(taken), self.max_batch):
            batch = taken[i:i + self.max_batch]
            try:
                self.sink(batch)
            except Exception:
                with self.lock:  # keep what is left for the next flush, within the bound
                    self.pending = (taken[i:] + self.pending)[:self.max_pending]
                raise
            saved += len(batch)
        return saved

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 -- the next flush retries
                log.warning("request log flush failed (kept for the next one): %s", e)
            if self.dropped:
                log.warning("request log: %d records dropped (over %d pending)", self.dropped, self.max_pending)
                self.dropped = 0

    def close(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        try:
            self.flush()
        except Exception as e:  # noqa: BLE001
            log.warning("request log flush at shutdown failed: %s", e)


def now() -> float:
    return time.time()
