"""The shared postgres-meta (the real npm @supabase/postgres-meta) reached per tenant with
the connection encrypted in x-connection-encrypted by services/shared/pgmeta.py: started on
demand, lists a tenant's own tables through the tenant's login, refuses requests without
(or with a wrongly keyed) header, stops when idle and when closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import psycopg
import pytest
import requests

from services.shared.pgmeta import PgMeta, PgMetaError, decrypt_connection, encrypt_connection
from services.shared.settings import Settings
from tests.conftest import two_free_ports
from tests.integration.test_project_apis import DB_PASS, two_projects  # noqa: F401 -- fixture
from tests.support import wait_for


def test_encryption_is_cryptojs_compatible() -> None:
    token = encrypt_connection("postgresql://u:p@h:5432/d", "k")
    assert decrypt_connection(token, "k") == "postgresql://u:p@h:5432/d"
    assert token != encrypt_connection("postgresql://u:p@h:5432/d", "k")  # salted
    with pytest.raises(ValueError):
        decrypt_connection(token, "another key")


@pytest.fixture
def meta(settings: Settings) -> Iterator[PgMeta]:
    port = two_free_ports()  # postgres-meta also takes port + 1 for its metrics
    m = PgMeta(settings.with_overrides(pg_meta_port=port, pg_meta_idle_s=3.0))
    try:
        yield m
    finally:
        m.close()


def test_pgmeta_per_tenant(meta: PgMeta, settings: Settings, two_projects: dict[str, Any]) -> None:  # noqa: F811
    a, b = two_projects["a"]["ref"], two_projects["b"]["ref"]
    for ref, table in ((a, "alpha_things"), (b, "beta_things")):
        with psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                             user=f"postgres.{ref}", password=DB_PASS, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE public.{table} (id int PRIMARY KEY, name text)")

    def url(ref: str) -> str:
        return (f"postgresql://{quote(f'postgres.{ref}', safe='')}:{quote(DB_PASS, safe='')}@"
                f"{settings.tenant_db_host}:{settings.tenant_db_port}/{ref}")

    assert not meta.running  # on demand: nothing until the first call
    tables = meta.request(url(a), "GET", "/tables", params={"included_schemas": "public"})
    assert [t["name"] for t in tables] == ["alpha_things"]
    assert {c["name"] for c in tables[0]["columns"]} == {"id", "name"}
    tables = meta.request(url(b), "GET", "/tables", params={"included_schemas": "public"})
    assert [t["name"] for t in tables] == ["beta_things"]
    rows = meta.request(url(a), "POST", "/query", json={"query": "select current_user as u"})
    assert rows == [{"u": f"postgres.{a}"}]

    # Without the header, or encrypted with another key: no database is reached.
    r = requests.get(f"{meta.base}/tables", timeout=10)
    assert r.status_code >= 400
    r = requests.get(f"{meta.base}/tables", timeout=10,
                     headers={"x-connection-encrypted": encrypt_connection(url(a), "guessed")})
    assert r.status_code >= 400
    # Another tenant's database with this tenant's login: refused by PostgreSQL itself.
    wrong = url(a).rsplit("/", 1)[0] + f"/{b}"
    with pytest.raises(PgMetaError):
        meta.request(wrong, "GET", "/tables")

    # Idle past pg_meta_idle_s: stopped; the next call starts it again.
    pid = meta.pid
    assert pid is not None
    wait_for("idle postgres-meta to stop", lambda: not meta.running, timeout=20)
    wait_for("its process to be gone", lambda: not Path(f"/proc/{pid}").exists()
             or b"State:\tZ" in Path(f"/proc/{pid}/status").read_bytes(), timeout=10)
    assert [t["name"] for t in meta.request(url(a), "GET", "/tables", params={"included_schemas": "public"})] == [
        "alpha_things"]
    pid = meta.pid
    assert pid is not None
    meta.close()
    assert not meta.running
    assert not Path(f"/proc/{pid}").exists() or b"State:\tZ" in Path(f"/proc/{pid}/status").read_bytes()
