"""The kubernetes driver's SQL Jobs (roles, schemas, drop-roles), run for real: the Job's own
container command and environment, with psql on this machine against this machine's
PostgreSQL (the Job runs the same psql in a postgres:15 image against the CNPG cluster).
The Job runs as the cluster's superuser; here it runs as the platform's role, which has
CREATEROLE and CREATEDB (the shared roles anon/authenticated/service_role already exist)."""

from __future__ import annotations

import os
import random
import string
import subprocess
from typing import Any, Iterator

import psycopg
import pytest
from psycopg import sql

from services.provisioner.drivers import kubernetes_manifests as m
from services.shared.db import connect
from tests.conftest import make_test_settings

pytestmark = pytest.mark.timeout(60)

PASSWORD = "o'wner pass; with $ and \\ quotes"


@pytest.fixture
def tenant() -> Iterator[tuple[Any, m.Tenant]]:
    settings = make_test_settings("k8ssql")
    ref = "".join(random.choice(string.ascii_lowercase) for _ in range(20))
    t = m.Tenant(ref=ref, shared_ns="platform-system", domain="projects.test", db_host=settings.db_host,
                 db_port=settings.db_port, dedicated=False, cluster="tenants")
    yield settings, t
    with connect(settings, autocommit=True, dbname="postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(ref)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(t.owner)))


def run_job(settings: Any, t: m.Tenant, what: str) -> subprocess.CompletedProcess[str]:
    container = m.sql_job(t, what)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert {e["name"] for e in container["env"] if "valueFrom" in e} == {"PGPASSWORD", "OWNER_PASSWORD"}
    env |= {"PATH": os.environ["PATH"], "OWNER_PASSWORD": PASSWORD, "PGUSER": settings.db_user,
            "PGPASSWORD": settings.db_password}
    return subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=30)


def test_roles_schemas_and_drop_run_on_real_postgres_idempotently(tenant: tuple[Any, m.Tenant]) -> None:
    settings, t = tenant
    assert PASSWORD not in str(m.sql_job(t, "roles"))  # the manifest never holds it
    for _ in range(2):  # a retried Job finds everything in place
        done = run_job(settings, t, "roles")
        assert done.returncode == 0, done.stderr
    # the owner logs in with the password from the Secret, quotes and all
    with connect(settings, autocommit=True, dbname="postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(t.ref), sql.Identifier(t.owner)))
    with psycopg.connect(host=settings.db_host, port=settings.db_port, user=t.owner, password=PASSWORD,
                         dbname=t.ref) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (t.owner,)
    for _ in range(2):
        done = run_job(settings, t, "schemas")
        assert done.returncode == 0, done.stderr
    with connect(settings, autocommit=True, dbname=t.ref) as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspowner = quote_ident(%s)::regrole",
                                              (t.owner,))}
        assert {"auth", "storage", "extensions", "_realtime"} <= schemas
    with connect(settings, autocommit=True, dbname="postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(t.ref)))
    for _ in range(2):
        done = run_job(settings, t, "drop-roles")
        assert done.returncode == 0, done.stderr
    with connect(settings, autocommit=True, dbname="postgres") as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (t.owner,)).fetchone() is None


def test_a_failing_statement_fails_the_job(tenant: tuple[Any, m.Tenant]) -> None:
    settings, t = tenant
    done = run_job(settings, t, "schemas")  # the owner role does not exist yet
    assert done.returncode != 0 and "does not exist" in done.stderr
