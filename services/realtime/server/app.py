"""The realtime server's composition root and process: `build_server(settings)` wires the
tenants lookup (projects RPC), the configuration source, the Postgres changes provider and
the usage meter; `main()` serves it on loopback until SIGTERM.

Imports aiohttp, the standard library, shared settings, tenants and crypto, and its own
modules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal

from aiohttp import web

from services.realtime.config import ConfigSource
from services.shared.crypto import internal_token
from services.shared.settings import Settings, load_settings
from services.shared.tenants import ProjectsRpc, Tenants

from .changes import ChangesProvider
from .config_feed import ConfigFeed
from .server import RealtimeServer, Usage

log = logging.getLogger("realtime.app")


def build_config(settings: Settings) -> ConfigSource:
    """Each project's realtime settings: the control plane's live feed (config_feed.py; a
    StaticConfig of services/realtime/config.py serves tests that run a server alone)."""
    return ConfigFeed(settings.db_conninfo).start()


def build_changes(settings: Settings) -> ChangesProvider:
    """Postgres changes: the CDC engine (services/realtime/server/cdc/, docs/realtime-changes.md)."""
    from .cdc import build_provider

    return build_provider(settings)


def build_usage(settings: Settings) -> Usage:
    from .usage import build_usage as build

    return build(settings)


def build_server(settings: Settings) -> RealtimeServer:
    rpc = ProjectsRpc(settings)
    tenants = Tenants(settings, lambda ref: rpc.call("edge_tenant", ref))
    return RealtimeServer(settings, tenants, build_config(settings), build_changes(settings),
                          usage=build_usage(settings), internal_token=internal_token(settings, "realtime"))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    server = build_server(settings)

    async def serve() -> None:
        runner = web.AppRunner(server.web_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.realtime_host, settings.realtime_port, reuse_address=True, backlog=1024)
        await site.start()
        print(json.dumps({"realtime": f"http://{settings.realtime_host}:{settings.realtime_port}"}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await asyncio.wait_for(runner.cleanup(), timeout=4.0)

    asyncio.run(serve())
