"""Benchmark: realtime broadcast fan-out through the project edge, on real processes, a
throwaway database and vhost.

Measures, in one run:
- fan-out: 1 sender and `--subscribers` (500) subscribers on one channel of one project,
  all on `vsn=2.0.0` sockets through the project edge (`<project URL>/realtime/v1/websocket`,
  as realtime-js connects): delivery latency p50/p99 (send to receipt, one clock: every socket
  is in this process) with the sender broadcasting `--rate` messages a second for `--seconds`,
  then deliveries per second for a burst of `--burst` messages sent at once;
- baseline: the same clients and the same pacing against a raw fan-out WebSocket server
  (aiohttp, no protocol, no edge, no limits): what Python's sockets cost on this machine.
- Postgres changes, insert to callback: see `postgres_changes_latency` (the CDC work fills it).

The project is put on the team plan and its realtime settings raised (max_concurrent_users
subscribers + 100, within the plan's ceiling) through the Management API, as a user would.

The clients are one Python process: on a busy machine they are the first limit, which the
baseline (same clients, a server that does nothing but fan out) shows.

Run: .venv/bin/python bench/realtime.py [--subscribers 500] [--rate 4] [--seconds 6] [--burst 20]
Last line: RESULT fanout_subscribers=... fanout_rate=... fanout_deliveries_per_s=... fanout_p50_ms=...
           fanout_p99_ms=... fanout_missing=... baseline_deliveries_per_s=... baseline_p50_ms=...
           baseline_p99_ms=... added_p99_ms=... target_p99_ms=100 load=...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import aiohttp  # noqa: E402
import psycopg  # noqa: E402

from bench.common import PlatformBench, free_port, pct, throwaway_settings  # noqa: E402

RAW_SERVER = r"""
import asyncio, sys
from aiohttp import web, WSMsgType
clients = set()
async def ws(request):
    w = web.WebSocketResponse(); await w.prepare(request); clients.add(w)
    try:
        async for m in w:
            if m.type == WSMsgType.TEXT:
                for c in list(clients):
                    if c is not w:
                        await c.send_str(m.data)
    finally:
        clients.discard(w)
    return w
async def health(request):
    return web.Response(text="ok")
app = web.Application(); app.router.add_get("/ws", ws); app.router.add_get("/health", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def user_broadcast(buf: bytes) -> dict[str, Any] | None:
    """A vsn 2 binary user broadcast (kind 4) as realtime-js decodes it."""
    if not buf or buf[0] != 4:
        return None
    tlen, elen, mlen, enc = struct.unpack("BBBB", buf[1:5])
    at = 5 + tlen + elen + mlen
    return json.loads(buf[at:]) if enc == 1 else None


class Bench(PlatformBench):
    def cleanup(self) -> None:
        with psycopg.connect(self.s.conninfo_for("postgres"), autocommit=True) as conn:
            for ref in getattr(self, "refs", []):
                conn.execute(f'DROP DATABASE IF EXISTS "{ref}" WITH (FORCE)')
                for role in (f"postgres.{ref}", f"authenticator.{ref}", ref):
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')

    def project(self, users: int) -> tuple[str, str]:
        org = self.http.post(self.base + "/v1/organizations", json={"name": "Realtime bench"},
                             headers=self.auth).json()["slug"]
        r = self.http.put(f"{self.base}/platform/organizations/{org}/billing/subscription", headers=self.auth,
                          json={"plan": "team"})
        r.raise_for_status()
        r = self.http.post(self.base + "/v1/projects", headers=self.auth,
                           json={"name": "rt", "organization_slug": org, "db_pass": "bench-password-1"})
        r.raise_for_status()
        ref = str(r.json()["id"])
        self.refs = [ref]
        deadline = time.monotonic() + 60
        while self.http.get(f"{self.base}/v1/projects/{ref}", headers=self.auth).json().get("status") != "ACTIVE_HEALTHY":
            if time.monotonic() > deadline:
                raise RuntimeError("project not active in 60 s")
            time.sleep(0.2)
        r = self.http.patch(f"{self.base}/v1/projects/{ref}/config/realtime", headers=self.auth,
                            json={"max_concurrent_users": users, "max_joins_per_second": 500,
                                  "max_events_per_second": 1000})
        r.raise_for_status()
        return ref, self.api_keys(ref)["anon"]


async def fanout(url: str, subscribers: int, rate: float, seconds: float, burst: int, *,
                 phoenix: bool) -> dict[str, float]:
    """Two phases on the same sockets: paced (`rate` messages a second for `seconds`):
    delivery latency p50/p99; burst (`burst` messages at once): deliveries per second until
    the last one arrived."""
    topic = "realtime:bench"
    latencies: list[float] = []
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    ready = 0

    async def join(ws: aiohttp.ClientWebSocketResponse, ref: str) -> None:
        await ws.send_str(json.dumps([ref, ref, topic, "phx_join",
                                      {"config": {"broadcast": {"self": False}, "presence": {"enabled": False},
                                                  "postgres_changes": [], "private": False}}]))
        async for m in ws:
            if m.type == aiohttp.WSMsgType.TEXT:
                f = json.loads(m.data)
                if f[3] == "phx_reply" and f[1] == ref:
                    if f[4]["status"] != "ok":
                        raise RuntimeError(f"join refused: {f[4]}")
                    return

    gate = asyncio.Semaphore(20)  # clients arrive a few at a time, not 500 in the same instant

    async def subscriber(i: int, started: asyncio.Event) -> None:
        nonlocal ready
        async with gate:
            ws = await session.ws_connect(url, max_msg_size=0)
            if phoenix:
                await join(ws, str(i + 1))
        ready += 1
        if ready == subscribers:
            started.set()
        async for m in ws:
            now = time.perf_counter()
            if phoenix and m.type == aiohttp.WSMsgType.BINARY:
                body = user_broadcast(m.data)
                if body is not None:
                    latencies.append((now - body["t"]) * 1000)
            elif not phoenix and m.type == aiohttp.WSMsgType.TEXT:
                latencies.append((now - json.loads(m.data)["t"]) * 1000)

    started = asyncio.Event()
    tasks = [asyncio.create_task(subscriber(i, started)) for i in range(subscribers)]
    await asyncio.wait_for(started.wait(), 300)
    sender = await session.ws_connect(url, max_msg_size=0)
    if phoenix:
        await join(sender, "s")
    sent = 0

    async def send() -> None:
        nonlocal sent
        body = {"t": time.perf_counter(), "k": sent}
        sent += 1
        if phoenix:
            await sender.send_str(json.dumps([None, str(1000 + sent), topic, "broadcast",
                                              {"type": "broadcast", "event": "tick", "payload": body}]))
        else:
            await sender.send_str(json.dumps(body))

    async def delivered(expected: int) -> bool:
        deadline = time.perf_counter() + 60
        while len(latencies) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        return len(latencies) >= expected

    out: dict[str, float] = {}
    n = int(rate * seconds)
    t0 = time.perf_counter()
    for k in range(n):
        delay = t0 + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send()
    complete = await delivered(n * subscribers)
    paced = list(latencies)
    out["p50_ms"], out["p99_ms"] = pct(paced, 50), pct(paced, 99)
    out["missing"] = float(n * subscribers - len(paced)) if not complete else 0.0
    latencies.clear()
    t1 = time.perf_counter()
    for _ in range(burst):
        await send()
    complete = await delivered(burst * subscribers)
    out["burst_per_s"] = len(latencies) / (time.perf_counter() - t1)
    out["missing"] += 0.0 if complete else float(burst * subscribers - len(latencies))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sender.close()
    await session.close()
    return out


def postgres_changes_latency(bench: Bench, ref: str, anon: str) -> dict[str, float]:
    """Insert-to-callback latency of Postgres changes (p50/p99 ms): the CDC work adds its
    measurement here and its keys to the RESULT line. Empty until then."""
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=500)
    ap.add_argument("--rate", type=float, default=4.0, help="broadcasts per second from the sender (paced phase)")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--burst", type=int, default=20, help="broadcasts sent at once (throughput phase)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (process logs) and say where")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    os.chmod(workdir, 0o711)
    settings = throwaway_settings("rtbench", workdir, edge=True)
    bench = Bench(settings, workdir)
    raw_port = free_port()
    raw = subprocess.Popen([sys.executable, "-c", RAW_SERVER, str(raw_port)], cwd=ROOT)
    try:
        bench.start()
        bench.sign_up()
        ref, anon = bench.project(args.subscribers + 100)
        # The server knows the project (its first lookup asks the projects service) before clients come.
        deadline = time.monotonic() + 60
        while bench.http.post(f"http://127.0.0.1:{settings.edge_port}/{ref}/realtime/v1/api/broadcast",
                              headers={"apikey": anon}, json={"messages": []}).status_code != 400:
            if time.monotonic() > deadline:
                raise RuntimeError("realtime did not answer for the project in 60 s")
            time.sleep(0.2)
        url = f"ws://127.0.0.1:{settings.edge_port}/{ref}/realtime/v1/websocket?apikey={anon}&vsn=2.0.0"
        rt = asyncio.run(fanout(url, args.subscribers, args.rate, args.seconds, args.burst, phoenix=True))
        print(f"through the edge, {args.subscribers} subscribers: at {args.rate:g} msg/s p50 {rt['p50_ms']:.1f} ms "
              f"p99 {rt['p99_ms']:.1f} ms; burst of {args.burst}: {rt['burst_per_s']:.0f} deliveries/s; "
              f"missing {rt['missing']:.0f}", flush=True)
        base = asyncio.run(fanout(f"ws://127.0.0.1:{raw_port}/ws", args.subscribers, args.rate, args.seconds,
                                  args.burst, phoenix=False))
        print(f"baseline raw fan-out server: p50 {base['p50_ms']:.1f} ms p99 {base['p99_ms']:.1f} ms; "
              f"burst {base['burst_per_s']:.0f} deliveries/s", flush=True)
        cdc = postgres_changes_latency(bench, ref, anon)
        extra = "".join(f" {k}={v:.1f}" for k, v in cdc.items())
        load = os.getloadavg()[0]
        print(f"RESULT fanout_subscribers={args.subscribers} fanout_rate={args.rate:g} "
              f"fanout_deliveries_per_s={rt['burst_per_s']:.0f} fanout_p50_ms={rt['p50_ms']:.1f} "
              f"fanout_p99_ms={rt['p99_ms']:.1f} fanout_missing={rt['missing']:.0f} "
              f"baseline_deliveries_per_s={base['burst_per_s']:.0f} baseline_p50_ms={base['p50_ms']:.1f} "
              f"baseline_p99_ms={base['p99_ms']:.1f} added_p99_ms={rt['p99_ms'] - base['p99_ms']:.1f} "
              f"target_p99_ms=100 load={load:.1f}{extra}")
    finally:
        raw.terminate()
        try:
            raw.wait(5)
        except subprocess.TimeoutExpired:
            raw.kill()
        bench.stop()
        if args.keep:
            print(f"logs kept in {workdir / 'logs'}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
