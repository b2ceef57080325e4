"""Realtime usage into the platform's usage pipeline: `realtime_messages` (each message sent
to a client plus each one received from a client, as Supabase counts them) and
`realtime_peak_connections` (the most sockets connected at once, per minute; a gauge) per
project, counted with the shared meter (services/shared/usage.py) into the realtime
service's usage outbox (services/realtime/usage_outbox.py), published by the relay as
`realtime_usage_recorded` and folded by metering.

Counting happens on the event loop and never blocks: a project whose organization is not
known yet is held aside and resolved (projects.project_org over RPC) in a worker thread.

Imports the standard library, shared settings, tenants (for the RPC) and usage.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any, Callable

from services.shared.settings import Settings
from services.shared.usage import UsageMeter

log = logging.getLogger("realtime.usage")

MESSAGES = "realtime_messages"
PEAK = "realtime_peak_connections"


class RealtimeUsage:
    def __init__(self, meter: UsageMeter, lookup: Callable[[str], str], *, resolve_interval: float = 0.5):
        self.meter = meter
        self.lookup = lookup
        self.resolve_interval = resolve_interval
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str, int], int] = defaultdict(int)  # (ref, metric, at) -> n or level
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._resolve_loop, name="realtime-usage-orgs", daemon=True)
        self._thread.start()

    def messages(self, ref: str, count: int) -> None:
        if count <= 0:
            return
        org = self.meter.directory.orgs.get(ref)
        if org is not None:
            self.meter.count(org, ref, MESSAGES, count)
            return
        self._hold(ref, MESSAGES, count)

    def connections(self, ref: str, current: int) -> None:
        org = self.meter.directory.orgs.get(ref)
        if org is not None:
            self.meter.level(org, ref, PEAK, current)
            return
        self._hold(ref, PEAK, current)

    def _hold(self, ref: str, metric: str, n: int) -> None:
        at = int(self.meter.clock())
        key = (ref, metric, at - at % 60)
        with self._lock:
            self._held[key] = max(self._held[key], n) if metric == PEAK else self._held[key] + n
        self._wake.set()

    def _resolve_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.resolve_interval)
            self._wake.clear()
            self.resolve()

    def resolve(self) -> None:
        with self._lock:
            held, self._held = self._held, defaultdict(int)
        keep: dict[tuple[str, str, int], int] = {}
        for (ref, metric, at), n in held.items():
            org = self.meter.directory.org_of(ref, self.lookup)
            if org is None:
                if ref not in self.meter.directory.missing:  # the service is away: try again later
                    keep[(ref, metric, at)] = n
                continue
            if metric == PEAK:
                self.meter.level(org, ref, metric, n, at=at)
            else:
                self.meter.count(org, ref, metric, n, at=at)
        if keep:
            with self._lock:
                for k, n in keep.items():
                    self._held[k] = max(self._held[k], n) if k[1] == PEAK else self._held[k] + n

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=3)
        self.resolve()
        self.meter.close()


def build_usage(settings: Settings) -> Any:
    from services.realtime.usage_outbox import RealtimeUsageOutbox
    from services.shared.eventstore import open_application
    from services.shared.tenants import StandaloneRpc

    class ProjectOrgs(StandaloneRpc):
        def __call__(self, ref: str) -> str:
            return str(self.call_service("projects", "project_org", ref))

    meter = UsageMeter(open_application(RealtimeUsageOutbox, settings, pool_size=1, max_overflow=1),
                       flush_interval=settings.usage_flush_interval_ms / 1000,
                       max_records=settings.usage_batch_max_records, levels=frozenset({PEAK}))
    meter.start()
    return RealtimeUsage(meter, ProjectOrgs(settings))
