"""Postgres changes for the realtime server: each tenant's WAL decoded from a temporary
logical replication slot (pgoutput, filtered by the tenant's `supabase_realtime`
publication), matched to the subscribers' `postgres_changes` bindings, checked against each
subscriber's RLS and sent in Supabase's payload shape. See docs/realtime-changes.md."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from services.shared.settings import Settings

from .engine import CdcProvider, CdcSettings


def settings_from(settings: Settings) -> CdcSettings:
    return CdcSettings(poll_interval_s=settings.realtime_cdc_poll_ms / 1000,
                       idle_close_s=settings.realtime_cdc_idle_close_s, batch_changes=settings.realtime_cdc_batch)


def build_provider(settings: Settings, rpc: Any = None) -> CdcProvider:
    """The provider the realtime server wires in: each project's realtime login comes from the
    provisioner (`get_tenant_login(ref, "realtime")`, over `rpc`, a StandaloneRpc), kept a
    minute."""
    if rpc is None:
        from services.shared.tenants import StandaloneRpc
        rpc = StandaloneRpc(settings)
    cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def login(ref: str) -> dict[str, Any]:
        hit = cache.get(ref)
        if hit is not None and time.monotonic() - hit[0] < 60:
            return hit[1]
        try:
            value = await asyncio.to_thread(rpc.call_service, "provisioner", "get_tenant_login", ref, "realtime")
        except Exception as exc:  # noqa: BLE001
            raise LookupError(f"no realtime login for {ref}: {type(exc).__name__}") from None
        cache[ref] = (time.monotonic(), dict(value))
        return dict(value)

    # The first call of a fresh process opens the broker connection (seconds on a busy
    # machine): open it now, not in the first join after a restart.
    def warm() -> None:
        try:
            rpc.call_service("provisioner", "health")
        except Exception:  # noqa: BLE001  (the first join tries again)
            pass

    threading.Thread(target=warm, name="cdc-rpc-warmup", daemon=True).start()
    return CdcProvider(login, settings_from(settings))
