"""The official Supabase CLI (npm `supabase`, pinned in package-lock.json; its Linux binary comes
in the optional package `@supabase/cli-linux-x64`, nothing is downloaded at install) against
this platform, as a developer runs it.

The CLI reaches the Management API of whatever its profile names: `--profile <file>` or
`SUPABASE_PROFILE=<file>`, a YAML file with `name`, `api_url`, `dashboard_url` and
`project_host` (found by running it: `Loading profile from flag: …`). Then:

- `gen types typescript --project-id <ref>`: `GET /v1/projects/{ref}/types/typescript`
  (postgres-meta's generator behind it), printed as it came;
- `link --project-ref <ref>`: `GET /v1/projects/{ref}`, `/api-keys`, `/config/storage` and
  `/config/database/pooler` (where it writes the pooler URL it would connect to);
- `db push` and `migration list` talk to the database itself. With `--linked` the CLI takes
  the pooler URL from the link, but refuses a pooler host without a registrable domain name
  ("failed to parse pooler TLD"), and this machine has no such name for 127.0.0.1. So they run
  with `--db-url`: the tenant database on 127.0.0.1 as the project's own login
  `postgres.<ref>` with the project's password, exactly what the pooler answer names. The
  migrations they record are the ones the Management API lists, and the other way round.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_project_lifecycle import new_org, wait_status

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "node_modules" / ".bin" / "supabase"
DB_PASS = "tenant-password-1"


def supabase(env: dict[str, str], cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    if ok:
        assert done.returncode == 0, f"supabase {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def cli(tmp_path: Path, gateway_url: str, user_token: dict[str, str]) -> dict[str, Any]:
    assert CLI.exists(), "npm packages missing: run `make npm` (npm ci from package-lock.json)"
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"name: supaplatform\napi_url: {gateway_url}\ndashboard_url: {gateway_url}\n"
                       "project_host: localhost\n")
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "app"
    work.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "SUPABASE_ACCESS_TOKEN": user_token["token"], "SUPABASE_PROFILE": str(profile),
           "SUPABASE_TELEMETRY_DISABLED": "1", "SUPABASE_NO_UPDATE_NOTIFIER": "1", "DO_NOT_TRACK": "1"}
    return {"env": env, "work": work}


def test_the_cli_generates_types_links_pushes_and_lists_migrations(cli: dict[str, Any], http: Any,
                                                                  user_token: dict[str, str]) -> None:
    tok, env, work = user_token["token"], cli["env"], cli["work"]
    org = new_org(http, tok, "CLI Org")
    r = http.post("/v1/projects", token=tok, json={"name": "cli", "organization_slug": org, "db_pass": DB_PASS,
                                                   "region": "us-east-1"})
    assert r.status_code == 201, r.text
    ref = r.json()["id"]
    wait_status(http, tok, ref, {"ACTIVE_HEALTHY"})
    r = http.post(f"/v1/projects/{ref}/database/query", token=tok,
                  json={"query": "create table public.gadgets (id bigint primary key generated always as identity, "
                                 "name text not null, weight numeric)"})
    assert r.status_code == 201, r.text

    # gen types: the Management API's types, from postgres-meta, name the table and its columns.
    types = supabase(env, work, "gen", "types", "typescript", "--project-id", ref).stdout
    assert "export type Database" in types and "gadgets: {" in types
    assert "name: string" in types and "id?: never" in types  # identity ALWAYS: never inserted

    # link: the project, its keys, storage settings and the pooler answer, which names the
    # project's own login on the tenant database (never the password).
    supabase(env, work, "init", "--yes")
    supabase(env, work, "link", "--project-ref", ref, "-p", DB_PASS)
    assert (work / "supabase" / ".temp" / "project-ref").read_text().strip() == ref
    pooler = (work / "supabase" / ".temp" / "pooler-url").read_text()
    assert f"postgres.{ref}@127.0.0.1:" in pooler and f"/{ref}" in pooler and DB_PASS not in pooler

    # db push: a local migration file applied and recorded in supabase_migrations.schema_migrations.
    db_url = f"postgresql://postgres.{ref}:{DB_PASS}@127.0.0.1:5432/{ref}?sslmode=disable"
    (work / "supabase" / "migrations").mkdir(exist_ok=True)
    (work / "supabase" / "migrations" / "20261201000000_sprockets.sql").write_text(
        "create table public.sprockets (id bigint primary key, gadget_id bigint references public.gadgets(id));\n")
    pushed = supabase(env, work, "db", "push", "--db-url", db_url, "--yes")
    assert "20261201000000_sprockets.sql" in pushed.stdout + pushed.stderr
    # ... which the Management API lists, and whose table the types now name.
    listed = http.get(f"/v1/projects/{ref}/database/migrations", token=tok).json()
    assert {"version": "20261201000000", "name": "sprockets"} in listed
    types = supabase(env, work, "gen", "types", "typescript", "--project-id", ref).stdout
    assert "sprockets: {" in types and 'referencedRelation: "gadgets"' in types

    # A migration applied through the Management API (as the MCP server does) is a remote
    # migration to the CLI: listed, and pushed again nothing.
    r = http.post(f"/v1/projects/{ref}/database/migrations", token=tok,
                  json={"name": "add_colour", "query": "alter table public.gadgets add column colour text"})
    assert r.status_code == 200, r.text
    api_version = [m["version"] for m in http.get(f"/v1/projects/{ref}/database/migrations", token=tok).json()
                   if m["name"] == "add_colour"][0]
    out = supabase(env, work, "migration", "list", "--db-url", db_url).stdout
    assert "20261201000000" in out and api_version in out
    assert "colour: string | null" in supabase(env, work, "gen", "types", "typescript", "--project-id", ref).stdout


def test_the_cli_gets_nothing_of_a_project_it_may_not_see(cli: dict[str, Any], http: Any, rpc: Any) -> None:
    # Somebody else's project: the CLI, with this user's token, gets an error and no types.
    email = f"other-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(email, "correct horse battery")
    other = rpc.orgs.issue_token(email, "tests")["token"]
    org = new_org(http, other, "Other CLI Org")
    r = http.post("/v1/projects", token=other, json={"name": "theirs", "organization_slug": org, "db_pass": DB_PASS,
                                                     "region": "us-east-1"})
    assert r.status_code == 201, r.text
    ref = r.json()["id"]
    wait_status(http, other, ref, {"ACTIVE_HEALTHY"})
    done = supabase(cli["env"], cli["work"], "gen", "types", "typescript", "--project-id", ref, ok=False)
    assert done.returncode != 0 and "export type Database" not in done.stdout
    assert "404" in done.stderr or "not found" in done.stderr.lower(), done.stderr
