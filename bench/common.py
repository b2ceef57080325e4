"""What the platform benchmarks share: free ports, percentiles, a throwaway platform (its own
database, vhost, state directory and ports, the processes started as `make run` does), and a
signed-up bench user with a management API token.

A bench script subclasses `PlatformBench`, names its `processes`, and adds what it measures;
`cleanup()` removes whatever else it created (tenants), before the database and vhost go.
"""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import requests  # noqa: E402

from services.shared.db import bootstrap, drop_database  # noqa: E402
from services.shared.rabbitadmin import RabbitAdmin  # noqa: E402
from services.shared.runner import Platform  # noqa: E402
from services.shared.settings import Settings, load_settings  # noqa: E402

PASSWORD = "bench password 1"
DB_PASS = "bench-password-1"


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port; inside `BENCH_PORTS` (`low-high`) when that is set, so runs on a
    shared machine stay in the range their user was given."""
    span = os.environ.get("BENCH_PORTS", "")
    if span:
        low, _, high = span.partition("-")
        for port in range(int(low), int(high or low) + 1):
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
        raise RuntimeError(f"no free port left in BENCH_PORTS={span}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank, rounded)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class UnixHTTP(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (a Deno worker's, a PostgREST's): the baseline without the platform."""

    def __init__(self, path: str, host: str = "localhost"):
        super().__init__(host)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def throwaway_settings(prefix: str, workdir: Path, *, edge: bool = False, **overrides: Any) -> Settings:
    """Settings for a run of its own: database and vhost `sp_<prefix>_<pid>_<random>`, the
    gateway and the functions runtime on free ports, state under `workdir`; `edge` also puts
    the project edge on a free port (and its public URL there)."""
    suffix = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    port = free_port()
    if edge:
        edge_port = free_port()
        overrides = {"edge_port": edge_port, "edge_public_url": f"http://127.0.0.1:{edge_port}", **overrides}
    return load_settings().with_overrides(
        db_name=f"sp_{suffix}", amqp_vhost=f"sp_{suffix}", gateway_port=port, public_url=f"http://127.0.0.1:{port}",
        functions_runtime_port=free_port(), realtime_port=free_port(), state_dir=str(workdir / "state"), **overrides)


def confirm_sign_up(http: requests.Session, base: str, settings: Settings, email: str) -> dict[str, Any]:
    """Follow the confirmation link mailed (through the outbox) after a sign-up: the session
    starts on `http`; returns the session info (user, csrf_token)."""
    import re
    import time
    from urllib.parse import parse_qs, urlsplit

    from services.shared.mail import OutboxMailer, outbox_dir

    deadline = time.monotonic() + 30
    while True:
        links = [m.group(1) for mail in OutboxMailer(outbox_dir(settings)).list() if mail.to == email
                 for m in [re.search(r"(\S+/verify-email\?\S+)", mail.body)] if m]
        if links:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no confirmation mail to {email}")
        time.sleep(0.05)  # polling the outbox, bounded by the deadline
    r = http.post(base + "/platform/auth/verify-email", json={"token": parse_qs(urlsplit(links[-1]).query)["token"][0]})
    r.raise_for_status()
    return dict(r.json())


def sign_up(http: requests.Session, base: str, settings: Settings, *, password: str = PASSWORD,
            email_prefix: str = "bench", display_name: str | None = "bench") -> dict[str, str]:
    """Sign a new user up on `http` (following the mailed link) and make them a management API
    token; returns the Authorization header (the session's cookies are cleared: the token is
    what is used)."""
    body = {"email": f"{email_prefix}-{uuid.uuid4().hex[:8]}@example.com", "password": password}
    if display_name is not None:
        body["display_name"] = display_name
    r = http.post(base + "/platform/auth/signup", json=body)
    r.raise_for_status()
    info = confirm_sign_up(http, base, settings, body["email"])
    r = http.post(base + "/platform/profile/tokens", json={"name": "bench"},
                  headers={"X-CSRF-Token": info["csrf_token"]})
    r.raise_for_status()
    http.cookies.clear()
    return {"Authorization": f"Bearer {r.json()['token']}"}


class PlatformBench:
    """The platform's `processes` (None: all of them) on `settings`, logs under `workdir`."""

    processes: list[str] | None = None

    def __init__(self, settings: Settings, workdir: Path):
        self.s = settings
        self.base = f"http://127.0.0.1:{settings.gateway_port}"
        self.platform = Platform(settings, log_dir=workdir / "logs", only=self.processes)
        self.http = requests.Session()
        self.auth: dict[str, str] = {}

    def start(self) -> None:
        RabbitAdmin(self.s).create_vhost(self.s.amqp_vhost)
        bootstrap(self.s)
        self.before_processes()
        self.platform.start()

    def before_processes(self) -> None:
        """Called once the database is bootstrapped, before any process starts."""

    def cleanup(self) -> None:
        """Remove what the run created besides the platform's database and vhost."""

    def stop(self) -> None:
        self.platform.stop()
        try:
            self.cleanup()
        finally:
            drop_database(self.s)
            admin = RabbitAdmin(self.s)
            admin.timeout = 30  # a busy broker's management API can take longer than usual
            for attempt in range(3):
                try:
                    admin.delete_vhost(self.s.amqp_vhost)
                    break
                except requests.RequestException:
                    if attempt == 2:
                        raise

    def sign_up(self, **kwargs: Any) -> dict[str, str]:
        """A new bench user; their token's header becomes `self.auth`."""
        self.auth = sign_up(self.http, self.base, self.s, **kwargs)
        return self.auth

    def create_project(self, org_name: str = "Bench", name: str = "bench") -> str:
        """A new organization and one project in it, as `self.auth`; returns the project's ref."""
        org = self.http.post(self.base + "/v1/organizations", json={"name": org_name}, headers=self.auth).json()["slug"]
        r = self.http.post(self.base + "/v1/projects", headers=self.auth,
                           json={"name": name, "organization_slug": org, "db_pass": DB_PASS})
        r.raise_for_status()
        return str(r.json()["id"])

    def api_keys(self, ref: str) -> dict[str, str]:
        """The project's API keys by name (anon, service_role)."""
        keys = self.http.get(f"{self.base}/v1/projects/{ref}/api-keys", headers=self.auth).json()
        return {k["name"]: k["api_key"] for k in keys}
