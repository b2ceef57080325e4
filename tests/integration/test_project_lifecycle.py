"""A project's whole life through the gateway only: create -> ACTIVE_HEALTHY -> connect with
the user's db_pass and write a row -> verify the anon key -> pause -> restore -> the row is
there -> delete -> database and bucket gone. Plus isolation and bad input."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest

from services.shared.settings import Settings


def wait_status(http: Any, token: str, ref: str, wanted: set[str], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        detail = http.get(f"/platform/projects/{ref}", token=token).json()
        seen.append((detail["status"], detail["progress"]["step"]))
        if detail["status"] in wanted:
            return {**detail, "seen": seen}
        assert time.monotonic() < deadline, f"{ref} stuck: {seen[-5:]}"
        time.sleep(0.1)


def new_org(http: Any, token: str, name: str = "Proj Org") -> str:
    r = http.post("/v1/organizations", token=token, json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["slug"]


def tenant_conninfo(settings: Settings, ref: str, user: str, password: str, db: str | None = None) -> str:
    return (f"host={settings.tenant_db_host} port={settings.tenant_db_port} dbname={db or ref} "
            f"user={user} password={password} connect_timeout=5")


def test_project_lifecycle_through_the_gateway(http: Any, user_token: dict[str, str], settings: Settings) -> None:
    token = user_token["token"]
    slug = new_org(http, token)
    r = http.post("/v1/projects", token=token, json={"name": "Life", "organization_slug": slug,
                                                    "db_pass": "Tenant-Pass-123", "region": "eu-west-1"})
    assert r.status_code == 201, r.text
    project = r.json()
    ref = project["ref"]
    assert project["status"] == "COMING_UP"
    done = wait_status(http, token, ref, {"ACTIVE_HEALTHY", "INIT_FAILED"})
    assert done["status"] == "ACTIVE_HEALTHY", done
    assert any(step not in (None, "queued") for _, step in done["seen"]) or done["progress"]["total_steps"] > 0
    conn = done["connection"]
    assert conn["db_name"] == ref and conn["db_user"] == f"postgres.{ref}"

    # The user's db_pass works for the tenant's postgres login, on its database.
    with psycopg.connect(tenant_conninfo(settings, ref, conn["db_user"], "Tenant-Pass-123")) as db:
        db.execute("CREATE TABLE notes (id serial primary key, body text)")
        db.execute("INSERT INTO notes (body) VALUES ('kept across pause')")
        db.commit()
        schemas = {r[0] for r in db.execute("SELECT nspname FROM pg_namespace").fetchall()}
        assert {"auth", "storage", "extensions", "public"} <= schemas
        assert db.execute("SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime'").fetchone()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tenant_conninfo(settings, ref, conn["db_user"], "wrong-password")).close()

    # The anon key is a JWT of this project, signed with its secret.
    keys = {k["name"]: k["api_key"] for k in http.get(f"/v1/projects/{ref}/api-keys", token=token).json()}
    claims = jwt.decode(keys["anon"], options={"verify_signature": False})
    assert claims["role"] == "anon" and claims["ref"] == ref

    health = http.get(f"/v1/projects/{ref}/health?services=db,storage", token=token).json()
    assert {h["name"]: h["status"] for h in health} == {"db": "ACTIVE_HEALTHY", "storage": "ACTIVE_HEALTHY"}

    assert http.post(f"/v1/projects/{ref}/pause", token=token).status_code == 200
    assert wait_status(http, token, ref, {"INACTIVE", "PAUSE_FAILED"})["status"] == "INACTIVE"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tenant_conninfo(settings, ref, conn["db_user"], "Tenant-Pass-123")).close()

    assert http.post(f"/v1/projects/{ref}/restore", token=token).status_code == 200
    assert wait_status(http, token, ref, {"ACTIVE_HEALTHY", "RESTORE_FAILED"})["status"] == "ACTIVE_HEALTHY"
    with psycopg.connect(tenant_conninfo(settings, ref, conn["db_user"], "Tenant-Pass-123")) as db:
        assert db.execute("SELECT body FROM notes").fetchall() == [("kept across pause",)]

    r = http.request("DELETE", f"/v1/projects/{ref}", token=token)
    assert r.status_code == 200 and r.json()["ref"] == ref
    assert wait_status(http, token, ref, {"REMOVED"})["status"] == "REMOVED"
    with psycopg.connect(settings.db_conninfo) as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (ref,)).fetchone() is None
        assert admin.execute("SELECT 1 FROM pg_roles WHERE rolname LIKE %s", (f"%.{ref}",)).fetchone() is None
    storage = Path(settings.state_dir) / "storage" / f"sp-{ref}"
    assert not storage.exists()
    assert all(p["ref"] != ref for p in http.get("/v1/projects", token=token).json())


def test_isolation_between_tenants_and_orgs(http: Any, user_token: dict[str, str], rpc: Any, settings: Settings) -> None:
    token = user_token["token"]
    slug = new_org(http, token, "Iso A")
    refs = []
    for name in ("a1", "a2"):
        r = http.post("/v1/projects", token=token, json={"name": name, "organization_slug": slug,
                                                        "db_pass": f"pass-{name}-123456"})
        assert r.status_code == 201, r.text
        refs.append(r.json()["ref"])
    for ref in refs:
        assert wait_status(http, token, ref, {"ACTIVE_HEALTHY", "INIT_FAILED"})["status"] == "ACTIVE_HEALTHY"
    a, b = refs
    # Tenant A's login cannot reach tenant B's database, even with the right password.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tenant_conninfo(settings, a, f"postgres.{a}", "pass-a1-123456", db=b)).close()

    # The free plan's third active project is refused, naming the limit and the plan.
    r = http.post("/v1/projects", token=token, json={"name": "third", "organization_slug": slug,
                                                    "db_pass": "pass-third-123"})
    assert r.status_code == 402 and "free plan" in r.json()["message"] and "2 active projects" in r.json()["message"]

    # A member of another org gets 404 for every project route of org A.
    other = f"iso-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(other, "another password")
    other_token = rpc.orgs.issue_token(other, "t")["token"]
    new_org(http, other_token, "Iso B")
    for method, path in [("GET", f"/v1/projects/{a}"), ("GET", f"/v1/projects/{a}/api-keys"),
                         ("POST", f"/v1/projects/{a}/pause"), ("DELETE", f"/v1/projects/{a}"),
                         ("GET", f"/v1/projects/{a}/postgrest"), ("GET", f"/v1/projects/{a}/config/auth"),
                         ("GET", f"/platform/projects/{a}"), ("POST", f"/platform/projects/{a}/jwt-secret/rotate")]:
        r = http.request(method, path, token=other_token)
        assert r.status_code in (403, 404), f"{method} {path}: {r.status_code}"
    assert all(p["ref"] not in refs for p in http.get("/v1/projects", token=other_token).json())
    for ref in refs:  # free the slots for other tests
        http.request("DELETE", f"/v1/projects/{ref}", token=token)


@pytest.mark.parametrize("body, status, text", [
    ({"organization_slug": "no-such-org-xyz"}, 404, "not found"),
    ({"region": "mars-1"}, 400, "region"),
    ({"db_pass": "short"}, 400, "db_pass"),
    ({"name": ""}, 400, "name"),
    ({"unknown_field": 1}, 400, "unknown_field"),
])
def test_bad_project_input_creates_nothing(http: Any, user_token: dict[str, str], body: dict[str, Any],
                                           status: int, text: str) -> None:
    token = user_token["token"]
    slug = new_org(http, token, "Bad Input")
    payload = {"name": "ok", "organization_slug": slug, "db_pass": "good-password-1", **body}
    r = http.post("/v1/projects", token=token, json=payload)
    assert r.status_code == status and text in r.text
    assert http.get("/v1/projects", token=token).json() == []


def test_idempotency_key_on_create(http: Any, user_token: dict[str, str]) -> None:
    token = user_token["token"]
    slug = new_org(http, token, "Idem")
    body = {"name": "once", "organization_slug": slug, "db_pass": "good-password-1"}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = http.post("/v1/projects", token=token, json=body, headers=dict(key))
    again = http.post("/v1/projects", token=token, json=body, headers=dict(key))
    assert first.status_code == again.status_code == 201 and first.json()["ref"] == again.json()["ref"]
    other = http.post("/v1/projects", token=token, json={**body, "name": "twice"}, headers=dict(key))
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["message"]
    assert len(http.get("/v1/projects", token=token).json()) == 1
    http.request("DELETE", f"/v1/projects/{first.json()['ref']}", token=token)


def test_settings_and_rotation_through_the_api(http: Any, user_token: dict[str, str]) -> None:
    token = user_token["token"]
    slug = new_org(http, token, "Settings")
    ref = http.post("/v1/projects", token=token, json={"name": "s", "organization_slug": slug,
                                                      "db_pass": "good-password-1"}).json()["ref"]
    r = http.request("PATCH", f"/v1/projects/{ref}/postgrest", token=token, json={"max_rows": 250})
    assert r.status_code == 200 and r.json()["max_rows"] == 250
    assert http.get(f"/v1/projects/{ref}/postgrest", token=token).json()["max_rows"] == 250
    r = http.request("PATCH", f"/v1/projects/{ref}/config/auth", token=token,
                     json={"site_url": "https://example.com", "external_github_enabled": True})
    assert r.status_code == 200 and r.json()["site_url"] == "https://example.com"
    bad = http.request("PATCH", f"/v1/projects/{ref}/config/auth", token=token, json={"jwt_exp": "long"})
    assert bad.status_code == 400
    before = {k["name"]: k["api_key"] for k in http.get(f"/v1/projects/{ref}/api-keys", token=token).json()}
    rotated = http.post(f"/platform/projects/{ref}/jwt-secret/rotate", token=token)
    assert rotated.status_code == 200
    after = {k["name"]: k["api_key"] for k in rotated.json()}
    assert after["anon"] != before["anon"] and after["service_role"] != before["service_role"]
    history = http.get(f"/platform/projects/{ref}/settings/history", token=token).json()
    assert [h["setting"] for h in history] == ["jwt_secret", "auth", "postgrest"]
    http.request("DELETE", f"/v1/projects/{ref}", token=token)
