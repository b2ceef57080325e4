"""Benchmark: the project's Auth API through the project edge, on real processes.

Starts what a project's Auth needs (orgs, projects, provisioner, billing, the gateway, the
project edge, the relay) on a throwaway database and vhost, creates a project with
mailer_autoconfirm, creates users through the admin API, then measures, one request at a
time through `<edge>/<ref>/auth/v1`:

- sign-in (`POST /token?grant_type=password`: bcrypt check, a session, a refresh token, a
  signed JWT);
- refresh (`grant_type=refresh_token`: rotation in one transaction);
- `GET /user` (JWT check and one query);

and, interleaved with them, the baseline a sign-in cannot beat: one bcrypt check at GoTrue's
cost (10) in this process, so `signin_added_p50_ms` is what the platform adds around the hash.

Run: .venv/bin/python bench/project_auth.py [--requests 200]
Last line: RESULT auth_signin_p50_ms=... auth_signin_p99_ms=... bcrypt_p50_ms=... signin_added_p50_ms=...
           auth_refresh_p50_ms=... auth_get_user_p50_ms=...
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import bcrypt  # noqa: E402
import requests  # noqa: E402

from bench.common import PASSWORD, PlatformBench, pct, throwaway_settings  # noqa: E402

PROCESSES = ["orgs", "projects", "provisioner", "billing", "gateway", "edge", "relay"]


class Bench(PlatformBench):
    processes = PROCESSES

    def cleanup(self) -> None:
        from tests.conftest import drop_tenants

        drop_tenants(self.s)

    def setup_project(self) -> None:
        auth = self.sign_up()
        self.ref = self.create_project()
        deadline = time.monotonic() + 60
        while self.http.get(f"{self.base}/v1/projects/{self.ref}", headers=auth).json()["status"] != "ACTIVE_HEALTHY":
            if time.monotonic() > deadline:
                raise RuntimeError("the project never came up")
            time.sleep(0.2)
        keys = self.api_keys(self.ref)
        self.anon, self.service = keys["anon"], keys["service_role"]
        r = self.http.patch(f"{self.base}/v1/projects/{self.ref}/config/auth", headers=auth,
                            json={"mailer_autoconfirm": True})
        r.raise_for_status()
        self.url = f"{self.s.project_api_url(self.ref)}/auth/v1"
        self.emails = []
        for i in range(5):
            e = f"user{i}@bench.example"
            r = requests.post(f"{self.url}/admin/users", timeout=30, json={"email": e, "password": PASSWORD,
                                                                          "email_confirm": True},
                              headers={"apikey": self.service, "Authorization": f"Bearer {self.service}"})
            r.raise_for_status()
            self.emails.append(e)

    def measure(self, n: int) -> dict[str, list[float]]:
        s = requests.Session()
        h = {"apikey": self.anon}
        out: dict[str, list[float]] = {"signin": [], "refresh": [], "user": [], "bcrypt": []}
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10))
        for i in range(5):  # warm the connection pools
            s.post(f"{self.url}/token?grant_type=password", headers=h, timeout=30,
                   json={"email": self.emails[i % 5], "password": PASSWORD}).raise_for_status()
        for i in range(n):
            # The baseline interleaved with the requests: the same load on the machine for both.
            t0 = time.perf_counter()
            bcrypt.checkpw(PASSWORD.encode(), hashed)
            out["bcrypt"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            r = s.post(f"{self.url}/token?grant_type=password", headers=h, timeout=30,
                       json={"email": self.emails[i % 5], "password": PASSWORD})
            out["signin"].append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            session = r.json()
            t0 = time.perf_counter()
            r = s.post(f"{self.url}/token?grant_type=refresh_token", headers=h, timeout=30,
                       json={"refresh_token": session["refresh_token"]})
            out["refresh"].append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            t0 = time.perf_counter()
            r = s.get(f"{self.url}/user", headers={**h, "Authorization": f"Bearer {r.json()['access_token']}"}, timeout=30)
            out["user"].append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    settings = throwaway_settings("authbench", workdir, edge=True)
    bench = Bench(settings, workdir)
    try:
        bench.start()
        bench.setup_project()
        got = bench.measure(args.requests)
        signin, refresh, user, base = got["signin"], got["refresh"], got["user"], got["bcrypt"]
        print(f"{args.requests} each, one at a time through the edge: sign-in p50 {statistics.median(signin):.1f} ms "
              f"p99 {pct(signin, 99):.1f} ms; refresh p50 {statistics.median(refresh):.1f} ms; "
              f"GET /user p50 {statistics.median(user):.1f} ms; bcrypt(10) alone p50 {statistics.median(base):.1f} ms",
              flush=True)
        print(f"RESULT auth_signin_p50_ms={statistics.median(signin):.1f} auth_signin_p99_ms={pct(signin, 99):.1f} "
              f"bcrypt_p50_ms={statistics.median(base):.1f} "
              f"signin_added_p50_ms={statistics.median(signin) - statistics.median(base):.1f} "
              f"auth_refresh_p50_ms={statistics.median(refresh):.1f} auth_get_user_p50_ms={statistics.median(user):.1f}")
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
