"""Shared fixtures: a throwaway database and RabbitMQ vhost per test session, the whole
platform started as real processes against them, and clients for RPC and HTTP."""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from services.shared.credentials import ensure as ensure_credentials
from services.shared.db import bootstrap, drop_database
from services.shared.rabbitadmin import RabbitAdmin
from services.shared.runner import Platform
from services.shared.settings import Settings, load_settings
from tests.spec import check_v1_response

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_free_ports() -> int:
    """A free port whose next port is free too (postgres-meta takes port + 1 for its metrics)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


_credentials_ready = False


def make_test_settings(tag: str) -> Settings:
    global _credentials_ready
    if not _credentials_ready:
        # The platform's own role and broker user (created on this machine's first run, shared
        # with every checkout): the suite logs in as they do, never as postgres or guest.
        ensure_credentials(load_settings({}), environ={})
        _credentials_ready = True
    suffix = f"{tag}_{os.getpid()}_{secrets.token_hex(3)}"
    gateway_port = free_port()
    edge_port = free_port()
    return load_settings({}).with_overrides(
        db_name=f"sp_test_{suffix}",
        amqp_vhost=f"sp_test_{suffix}",
        gateway_port=gateway_port,
        public_url=f"http://127.0.0.1:{gateway_port}",
        state_dir=str(ARTIFACTS / "state" / suffix),
        consumer_retry_base_ms=50,
        consumer_max_attempts=3,
        # Real argon2id, with cheaper parameters: the suite creates hundreds of users.
        password_hash_time_cost=1,
        password_hash_memory_kib=8192,
        # Edge functions: the runtime on its own free port; SUPABASE_URL must point at this
        # gateway; a short wall clock so the limit tests do not wait 150 s.
        functions_runtime_port=free_port(),
        # The project edge (project APIs) on its own port: another origin than the gateway.
        edge_port=edge_port,
        # The realtime server behind the edge, on its own free loopback port.
        realtime_port=free_port(),
        edge_public_url=f"http://127.0.0.1:{edge_port}",
        functions_wall_clock_s=8,
        # The database service's postgres-meta (types): this session's own, never another
        # checkout's (its encryption key is per process).
        pg_meta_port=two_free_ports(),
        # SQL through the Management API: a short timeout so the timeout tests are quick.
        database_statement_timeout_ms=4000,
        # CPU time far below the wall clock: on a loaded 2-core machine a busy loop may get a
        # sixth of a core, and must still meet the CPU limit first.
        functions_cpu_time_ms=500,
        # The Stripe webhook route verifies signatures with this (tests sign with it too).
        stripe_webhook_secret="whsec_platform_tests",
        # Abuse limits out of the way of a suite that signs up hundreds of users from one IP
        # (tests/integration/test_abuse_limits.py runs its own gateways with low ones).
        rate_limit_per_ip=1_000_000,
        rate_limit_per_account=1_000_000,
    )


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    s = make_test_settings("s")
    admin = RabbitAdmin(s)
    admin.create_vhost(s.amqp_vhost)
    bootstrap(s)
    yield s
    drop_tenants(s)
    drop_database(s)
    admin.delete_vhost(s.amqp_vhost)


def drop_tenants(s: Settings) -> None:
    """Tenant databases and roles live cluster-wide, outside the throwaway platform database:
    remove every tenant this session's provisioner touched."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(s.db_conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('provisioner.sagas')").fetchone()[0]
        refs = [r[0] for r in conn.execute("SELECT DISTINCT ref FROM provisioner.sagas").fetchall()] if exists else []
    with psycopg.connect(s.conninfo_for("postgres"), autocommit=True) as conn:
        for ref in refs:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(ref)))
            for role in (f"supabase_auth_admin.{ref}", f"supabase_storage_admin.{ref}", f"supabase_realtime_admin.{ref}",
                         f"postgres.{ref}",
                         f"authenticator.{ref}", ref):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="session")
def platform(settings: Settings) -> Iterator[Platform]:
    p = Platform(settings, log_dir=ARTIFACTS / "logs" / settings.db_name)
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="session")
def rpc(settings: Settings, platform: Platform) -> Iterator[Any]:
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri}, timeout=20) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def gateway_url(settings: Settings, platform: Platform) -> str:
    return f"http://{settings.gateway_host}:{settings.gateway_port}"


@pytest.fixture(scope="session")
def edge_url(settings: Settings, platform: Platform) -> str:
    """Where project APIs are served (a project's API URL is <edge_url>/<ref>)."""
    return settings.edge_public_url


@pytest.fixture
def user_token(rpc: Any) -> dict[str, str]:
    """A fresh user and a personal access token for it."""
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    user = rpc.orgs.register_user(email, "correct horse battery")
    token = rpc.orgs.issue_token(email, "tests")["token"]
    return {"email": email, "user_id": user["id"], "token": token}


@pytest.fixture
def http(gateway_url: str) -> Any:
    class Client:
        def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
            headers = kw.pop("headers", {})
            if token:
                headers["Authorization"] = f"Bearer {token}"
            response = requests.request(method, gateway_url + path, headers=headers, timeout=20, **kw)
            if path.startswith("/v1/"):
                check_v1_response(response)  # every v1 answer the suite sees must match the spec
            return response

        def get(self, path: str, **kw: Any) -> requests.Response:
            return self.request("GET", path, **kw)

        def post(self, path: str, **kw: Any) -> requests.Response:
            return self.request("POST", path, **kw)

    return Client()
