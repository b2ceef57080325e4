"""Benchmark: does a flood of bad bearer tokens slow /health and signed-in users?

Starts orgs and the gateway on a throwaway database and vhost, signs a user up (session
cookie), then measures, one request at a time, the latency of GET /health and of a
signed-in GET /platform/profile: first on a quiet gateway (the baseline, same run), then
while 1,000 concurrent clients keep sending random `sbp_` tokens (each client sends again as
soon as it gets an answer). The flood comes from one IP, so after `rate_limit_per_ip` failures
the gateway refuses that IP's tokens from memory (429). `--unlimited` sets the limit out of
reach: every bad token then costs an RPC to orgs (what a flood from many addresses costs).

Run: .venv/bin/python bench/abuse.py [--flood 1000] [--probes 200] [--unlimited]
Last line: RESULT mode=... health_p50_ms=... health_flood_p50_ms=... health_ratio=...
           profile_p50_ms=... profile_flood_p50_ms=... profile_ratio=... flood_rps=... flood_codes=...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import aiohttp  # noqa: E402
import requests  # noqa: E402

from bench.common import confirm_sign_up, free_port  # noqa: E402
from services.shared.db import drop_database  # noqa: E402
from services.shared.rabbitadmin import RabbitAdmin  # noqa: E402
from services.shared.runner import Platform  # noqa: E402
from services.shared.settings import load_settings  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def probe(session: requests.Session, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = session.get(url, timeout=60)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return out


class Flood:
    def __init__(self, url: str, clients: int):
        self.url, self.clients = url, clients
        self.codes: Counter[int | str] = Counter()
        self.sent = 0
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)

    async def run(self) -> None:
        conn = aiohttp.TCPConnector(limit=self.clients, force_close=False)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as http:
            async def client() -> None:
                while not self.stop.is_set():
                    token = "sbp_" + secrets.token_hex(20)
                    try:
                        async with http.get(self.url, headers={"Authorization": f"Bearer {token}"}) as r:
                            await r.read()
                            self.codes[r.status] += 1
                    except Exception as e:  # noqa: BLE001 -- count, keep flooding
                        self.codes[type(e).__name__] += 1
                        await asyncio.sleep(0.05)
                    self.sent += 1
                    if self.sent >= self.clients:
                        self.ready.set()

            await asyncio.gather(*(client() for _ in range(self.clients)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood", type=int, default=1000)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--unlimited", action="store_true", help="rate limits out of reach (a flood from many IPs)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
    suffix = f"abbench_{os.getpid()}_{secrets.token_hex(3)}"
    port = free_port()
    overrides = dict(db_name=f"sp_{suffix}", amqp_vhost=f"sp_{suffix}", gateway_port=port,
                     public_url=f"http://127.0.0.1:{port}", state_dir=str(workdir / "state"))
    if args.unlimited:
        overrides.update(rate_limit_per_ip=10**9, rate_limit_per_account=10**9)
    settings = load_settings().with_overrides(**overrides)
    admin = RabbitAdmin(settings)
    admin.create_vhost(settings.amqp_vhost)
    platform = Platform(settings, log_dir=workdir / "logs", only=["orgs", "gateway"])
    base = f"http://127.0.0.1:{port}"
    try:
        platform.start()
        user = requests.Session()
        address = f"b-{uuid.uuid4().hex[:8]}@example.com"
        r = user.post(base + "/platform/auth/signup", timeout=30,
                      json={"email": address, "password": "correct horse battery"})
        assert r.status_code == 202, r.text
        confirm_sign_up(user, base, settings, address)
        health = requests.Session()
        probe(health, base + "/health", 20), probe(user, base + "/platform/profile", 20)  # warm
        h0 = probe(health, base + "/health", args.probes)
        p0 = probe(user, base + "/platform/profile", args.probes)
        flood = Flood(base + "/platform/profile", args.flood)
        flood.thread.start()
        flood.ready.wait(120)  # every client has had an answer once: the flood is in full swing
        t0, sent0 = time.monotonic(), flood.sent
        h1 = probe(health, base + "/health", args.probes)
        p1 = probe(user, base + "/platform/profile", args.probes)
        rps = (flood.sent - sent0) / (time.monotonic() - t0)
        flood.stop.set()
        flood.thread.join(120)
        mode = "unlimited" if args.unlimited else "limited"
        codes = ",".join(f"{k}:{v}" for k, v in sorted(flood.codes.items(), key=str))
        print(f"/health p50 {statistics.median(h0):.2f} ms quiet, {statistics.median(h1):.2f} ms under the flood "
              f"(p99 {pct(h0, 99):.2f} / {pct(h1, 99):.2f}); /platform/profile p50 {statistics.median(p0):.2f} / "
              f"{statistics.median(p1):.2f} ms (p99 {pct(p0, 99):.2f} / {pct(p1, 99):.2f}); "
              f"flood {rps:.0f} requests/s, answers {codes}", flush=True)
        print(f"RESULT mode={mode} flood={args.flood} health_p50_ms={statistics.median(h0):.2f} "
              f"health_flood_p50_ms={statistics.median(h1):.2f} "
              f"health_ratio={statistics.median(h1) / statistics.median(h0):.2f} "
              f"profile_p50_ms={statistics.median(p0):.2f} profile_flood_p50_ms={statistics.median(p1):.2f} "
              f"profile_ratio={statistics.median(p1) / statistics.median(p0):.2f} flood_rps={rps:.0f} "
              f"flood_codes={codes}")
    finally:
        platform.stop()
        drop_database(settings)
        admin.delete_vhost(settings.amqp_vhost)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
