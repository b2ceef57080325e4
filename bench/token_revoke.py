"""Benchmark: how soon is a revoked token refused by another gateway process?

Starts orgs, the relay and two gateways on a throwaway database and vhost. A user signs up
(through the mailed link) on gateway A and makes personal access tokens; each token is used
once on gateway B, so B's auth cache holds it (gateway_auth_cache_ttl_s, 10 s by default).
Then the tokens are revoked on A (one DELETE each, or all at once by a password change with
revoke_tokens) and B is asked in a loop until it answers 401: the time from the revoking
answer to B's first 401 is how long a revoked token keeps working elsewhere (orgs'
token_revoked event, relayed to B's broadcast queue). The baseline, in the same run, is B's
plain round trip for a request.

Run: .venv/bin/python bench/token_revoke.py [--rounds 10]
Last line: RESULT rounds=... request_p50_ms=... revoke_p50_ms=... revoke_max_ms=...
           password_revoke_ms=...
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import requests  # noqa: E402

from bench.common import confirm_sign_up, free_port  # noqa: E402
from services.shared.db import bootstrap, drop_database  # noqa: E402
from services.shared.rabbitadmin import RabbitAdmin  # noqa: E402
from services.shared.runner import Platform  # noqa: E402
from services.shared.settings import load_settings  # noqa: E402

PASSWORD = "correct horse battery"


def refused_after(b: str, token: str, t0: float, timeout: float = 30.0) -> float:
    """Seconds from t0 until gateway b refuses the token (polling as fast as it answers)."""
    while time.perf_counter() - t0 < timeout:
        r = requests.get(b + "/platform/profile", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if r.status_code == 401:
            return time.perf_counter() - t0
    raise RuntimeError(f"gateway B still accepted a revoked token after {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-revoke-"))
    suffix = f"rvbench_{os.getpid()}_{secrets.token_hex(3)}"
    port_a, port_b = free_port(), free_port()
    s = load_settings().with_overrides(db_name=f"sp_{suffix}", amqp_vhost=f"sp_{suffix}", gateway_port=port_a,
                                       public_url=f"http://127.0.0.1:{port_a}", state_dir=str(workdir / "state"),
                                       rate_limit_per_ip=10**9, rate_limit_per_account=10**9)
    s_b = s.with_overrides(gateway_port=port_b)
    admin = RabbitAdmin(s)
    admin.create_vhost(s.amqp_vhost)
    bootstrap(s)
    first = Platform(s, log_dir=workdir / "logs", only=["orgs", "gateway", "relay"])
    second = Platform(s_b, log_dir=workdir / "logs" / "b", only=["gateway"])
    a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    try:
        first.start()
        second.start()
        sess = requests.Session()
        address = f"rv-{uuid.uuid4().hex[:8]}@example.com"
        sess.post(a + "/platform/auth/signup", json={"email": address, "password": PASSWORD}, timeout=30).raise_for_status()
        csrf = confirm_sign_up(sess, a, s, address)["csrf_token"]
        sess.headers["X-CSRF-Token"] = csrf

        def new_token() -> tuple[str, str]:
            t = sess.post(a + "/platform/profile/tokens", json={"name": "bench"}, timeout=30).json()
            return t["id"], t["token"]

        request_ms, revoke_ms = [], []
        for _ in range(args.rounds):
            token_id, token = new_token()
            t0 = time.perf_counter()
            assert requests.get(b + "/platform/profile", headers={"Authorization": f"Bearer {token}"},
                                timeout=30).status_code == 200  # now in B's cache
            request_ms.append((time.perf_counter() - t0) * 1000)
            assert sess.delete(a + f"/platform/profile/tokens/{token_id}", timeout=30).status_code == 204
            revoke_ms.append(refused_after(b, token, time.perf_counter()) * 1000)
        _, token = new_token()
        assert requests.get(b + "/platform/profile", headers={"Authorization": f"Bearer {token}"},
                            timeout=30).status_code == 200
        r = sess.post(a + "/platform/profile/password", timeout=30,
                      json={"current_password": PASSWORD, "new_password": "another passphrase", "revoke_tokens": True})
        assert r.status_code == 204, r.text
        password_ms = refused_after(b, token, time.perf_counter()) * 1000
        print(f"RESULT rounds={args.rounds} request_p50_ms={statistics.median(request_ms):.1f} "
              f"revoke_p50_ms={statistics.median(revoke_ms):.1f} revoke_max_ms={max(revoke_ms):.1f} "
              f"password_revoke_ms={password_ms:.1f}")
    finally:
        second.stop()
        first.stop()
        drop_database(s)
        admin.delete_vhost(s.amqp_vhost)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
