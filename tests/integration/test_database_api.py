"""The Management API's database routes against the real platform and a real tenant
database: SQL as the project's own login, migrations in supabase_migrations, TypeScript
types, advisors, storage, logs; and bad SQL, a timeout and a huge result each refused with
PostgreSQL's message and nothing changed."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.integration.test_people import latest_mail_token
from tests.integration.test_project_lifecycle import new_org, wait_status


@pytest.fixture
def project(http: Any, user_token: dict[str, str]) -> dict[str, Any]:
    tok = user_token["token"]
    org = new_org(http, tok, "DB Org")
    r = http.post("/v1/projects", token=tok, json={"name": "db", "organization_slug": org,
                                                   "db_pass": "tenant-password-1", "region": "us-east-1"})
    assert r.status_code == 201, r.text
    ref = r.json()["id"]
    wait_status(http, tok, ref, {"ACTIVE_HEALTHY"})
    return {"token": tok, "ref": ref, "org": org, "user_id": user_token["user_id"]}


def sql(http: Any, p: dict[str, Any], query: str, path: str = "database/query", **body: Any) -> Any:
    return http.post(f"/v1/projects/{p['ref']}/{path}", token=p["token"], json={"query": query, **body})


def test_sql_migrations_types_advisors(http: Any, project: dict[str, Any]) -> None:
    p, ref, tok = project, project["ref"], project["token"]

    # SQL runs as the project's own database login, never a platform role.
    r = sql(http, p, "select current_user as who, current_database() as db, "
                     "(select rolsuper from pg_roles where rolname = current_user) as super")
    assert r.status_code == 201, r.text
    assert r.json() == [{"who": f"postgres.{ref}", "db": ref, "super": False}]

    # Parameters ($1) and JSON-friendly values.
    r = sql(http, p, "select $1::int + 1 as n, $2::text as t, now()::date as d", parameters=[41, "x"])
    assert r.status_code == 201, r.text
    assert r.json()[0]["n"] == 42 and r.json()[0]["t"] == "x" and len(r.json()[0]["d"]) == 10

    # A migration: applied and recorded in one transaction, listed with its name.
    assert http.get(f"/v1/projects/{ref}/database/migrations", token=tok).json() == []
    r = http.post(f"/v1/projects/{ref}/database/migrations", token=tok,
                  json={"name": "create_todos", "query": "create table public.todos (id bigint primary key "
                        "generated always as identity, title text not null, done boolean default false, "
                        "owner uuid); create table public.notes (id int primary key, todo_id bigint "
                        "references public.todos(id));"})
    assert r.status_code == 200, r.text
    migrations = http.get(f"/v1/projects/{ref}/database/migrations", token=tok).json()
    assert [m["name"] for m in migrations] == ["create_todos"] and migrations[0]["version"].isdigit()

    # A failing migration changes nothing: neither its SQL nor the history.
    r = http.post(f"/v1/projects/{ref}/database/migrations", token=tok,
                  json={"name": "half", "query": "create table public.half (id int); select * from nowhere;"})
    assert r.status_code == 400 and 'relation "nowhere" does not exist' in r.json()["message"]
    assert sql(http, p, "select to_regclass('public.half') as t").json() == [{"t": None}]
    assert len(http.get(f"/v1/projects/{ref}/database/migrations", token=tok).json()) == 1

    # The same Idempotency-Key twice applies once.
    body = {"name": "seed", "query": "insert into public.todos (title) values ('first')"}
    for _ in range(2):
        r = http.post(f"/v1/projects/{ref}/database/migrations", token=tok, json=body,
                      headers={"Idempotency-Key": "seed-1"})
        assert r.status_code == 200, r.text
    assert sql(http, p, "select count(*)::int as n from public.todos").json() == [{"n": 1}]
    # PUT records without applying.
    r = http.put(f"/v1/projects/{ref}/database/migrations", token=tok,
                 json={"name": "recorded_only", "query": "create table public.never (id int)"}) \
        if hasattr(http, "put") else http.request("PUT", f"/v1/projects/{ref}/database/migrations", token=tok,
                                                  json={"name": "recorded_only",
                                                        "query": "create table public.never (id int)"})
    assert r.status_code == 200, r.text
    assert [m["name"] for m in http.get(f"/v1/projects/{ref}/database/migrations", token=tok).json()] == \
        ["create_todos", "seed", "recorded_only"]
    assert sql(http, p, "select to_regclass('public.never') as t").json() == [{"t": None}]

    # TypeScript types name the table and its columns, with the identity column never inserted.
    types = http.get(f"/v1/projects/{ref}/types/typescript", token=tok).json()["types"]
    assert "export type Database" in types and "todos: {" in types
    assert "title: string" in types and "done: boolean | null" in types and "id?: never" in types
    assert 'referencedRelation: "todos"' in types

    # Advisors: the tables were created without RLS; notes.todo_id has no index.
    lints = http.get(f"/v1/projects/{ref}/advisors/security", token=tok).json()["lints"]
    flagged = {(x["name"], x["metadata"]["name"]) for x in lints}
    assert ("rls_disabled_in_public", "todos") in flagged and ("rls_disabled_in_public", "notes") in flagged
    perf = http.get(f"/v1/projects/{ref}/advisors/performance", token=tok).json()["lints"]
    assert any(x["name"] == "unindexed_foreign_keys" and x["metadata"]["name"] == "notes" for x in perf)
    # Enable RLS with an unwrapped auth.uid() call (the tenant database has Supabase's auth.uid()):
    # the RLS lint goes, the initplan lint comes.
    r = sql(http, p, "alter table public.todos enable row level security; "
                     "create policy own on public.todos using (owner = auth.uid());")
    assert r.status_code == 201, r.text
    flagged = {(x["name"], x["metadata"]["name"])
               for x in http.get(f"/v1/projects/{ref}/advisors/security", token=tok).json()["lints"]}
    assert ("rls_disabled_in_public", "todos") not in flagged
    perf = http.get(f"/v1/projects/{ref}/advisors/performance", token=tok).json()["lints"]
    assert any(x["name"] == "auth_rls_initplan" and x["metadata"]["name"] == "todos" for x in perf)

    # Storage: the project's storage.buckets is empty, so no buckets; settings with defaults, then changed.
    assert http.get(f"/v1/projects/{ref}/storage/buckets", token=tok).json() == []
    cfg = http.get(f"/v1/projects/{ref}/config/storage", token=tok).json()
    assert cfg["fileSizeLimit"] == 52428800
    r = http.request("PATCH", f"/v1/projects/{ref}/config/storage", token=tok, json={"fileSizeLimit": 1048576})
    assert r.status_code == 200, r.text
    assert http.get(f"/v1/projects/{ref}/config/storage", token=tok).json()["fileSizeLimit"] == 1048576
    r = http.request("PATCH", f"/v1/projects/{ref}/config/storage", token=tok,
                     json={"features": {"s3Protocol": {"enabled": True}}})
    assert r.status_code == 400 and "not available" in r.json()["message"]
    # A bucket in the project's storage.buckets (the table its Storage API serves) is listed.
    r = sql(http, p, "insert into storage.buckets (id, name) values ('avatars', 'avatars')")
    assert r.status_code == 201, r.text
    buckets = http.get(f"/v1/projects/{ref}/storage/buckets", token=tok).json()
    assert [b["name"] for b in buckets] == ["avatars"] and buckets[0]["public"] is False

    # Logs: the failed migration is in the project's postgres logs.
    logs = http.get(f"/v1/projects/{ref}/analytics/endpoints/logs.all", token=tok,
                    params={"sql": "select id, timestamp, event_message, log_attributes['parsed.error_severity'] "
                                   "as error_severity from logs where source = 'postgres_logs' "
                                   "order by timestamp desc limit 10"}).json()["result"]
    assert any('relation "nowhere" does not exist' in x["event_message"] and x["error_severity"] == "ERROR"
               for x in logs)
    assert http.get(f"/v1/projects/{ref}/analytics/endpoints/logs.all", token=tok,
                    params={"sql": "drop table logs"}).status_code == 400
    assert http.get(f"/v1/projects/{ref}/api-keys/legacy", token=tok).json() == {"enabled": True}


def test_bad_sql_timeout_and_huge_result_change_nothing(http: Any, project: dict[str, Any], settings: Any) -> None:
    p, ref = project, project["ref"]
    assert sql(http, p, "create table public.t (n int); insert into public.t values (1)").status_code == 201

    # Bad SQL: 400 with PostgreSQL's message; the statement before it is rolled back.
    r = sql(http, p, "insert into public.t values (2); selec 1")
    assert r.status_code == 400 and 'syntax error at or near "selec"' in r.json()["message"]
    # A timeout (the limit is the service's statement timeout): the insert before it is rolled back.
    started = time.monotonic()
    r = sql(http, p, "insert into public.t values (3); select pg_sleep(60)")
    assert r.status_code == 400 and "statement timeout" in r.json()["message"], r.text
    assert time.monotonic() - started < settings.database_statement_timeout_ms / 1000 + 10
    # Even a query that turns the timeout off is cancelled by the watchdog.
    r = sql(http, p, "set statement_timeout = 0; insert into public.t values (4); select pg_sleep(60)")
    assert r.status_code == 400 and "cancel" in r.json()["message"], r.text
    # A huge result: refused at the row cap, and the write in the same statement rolled back.
    r = sql(http, p, "with w as (insert into public.t values (5) returning n) "
                     "select g from generate_series(1, 1000000) g, w")
    assert r.status_code == 400 and "more than" in r.json()["message"] and "rows" in r.json()["message"]
    assert sql(http, p, "select array_agg(n order by n) as ns from public.t").json() == [{"ns": [1]}]

    # Read-only: writes refused, even after an attempted escape from the transaction.
    for q in ("insert into public.t values (6)", "commit; insert into public.t values (6)",
              "set transaction read write"):
        r = sql(http, p, q, path="database/query/read-only")
        assert r.status_code == 400, (q, r.text)
    r = sql(http, p, "select count(*)::int as n from public.t", read_only=True)
    assert r.status_code == 201 and r.json() == [{"n": 1}]
    # Bad input: 400, nothing run.
    assert http.post(f"/v1/projects/{ref}/database/query", token=p["token"], json={"q": "x"}).status_code == 400


def test_strangers_and_roles(http: Any, project: dict[str, Any], rpc: Any, settings: Any) -> None:
    ref, tok = project["ref"], project["token"]

    # A read-only member: reads data and runs read-only SQL, but cannot write.
    assert sql(http, project, "create table public.items (id int primary key); "
                              "insert into public.items values (1)").status_code == 201
    ro_email = f"ro-{uuid.uuid4().hex[:8]}@example.com"
    ro_user = rpc.orgs.register_user(ro_email, "correct horse battery")
    r = http.post(f"/platform/organizations/{project['org']}/invitations", token=tok,
                  json={"email": ro_email, "role": "read_only"})
    assert r.status_code == 201, r.text
    rpc.orgs.accept_invitation(ro_user["id"], latest_mail_token(settings, ro_email))
    ro = {**project, "token": rpc.orgs.issue_token(ro_email, "tests")["token"]}
    r = sql(http, ro, "select id from public.items", path="database/query/read-only")
    assert r.status_code == 201 and r.json() == [{"id": 1}], r.text
    assert http.get(f"/v1/projects/{ref}/types/typescript", token=ro["token"]).status_code == 200
    for attempt in (sql(http, ro, "insert into public.items values (2)"),
                    sql(http, ro, "select 1", read_only=False),
                    http.post(f"/v1/projects/{ref}/database/migrations", token=ro["token"],
                              json={"name": "x", "query": "drop table public.items"})):
        assert attempt.status_code == 403, attempt.text
    assert sql(http, project, "select count(*)::int as n from public.items").json() == [{"n": 1}]

    email = f"stranger-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(email, "correct horse battery")
    stranger = rpc.orgs.issue_token(email, "tests")["token"]
    for method, path, body in (("POST", "database/query", {"query": "select 1"}),
                               ("GET", "database/migrations", None), ("GET", "types/typescript", None),
                               ("GET", "advisors/security", None), ("GET", "storage/buckets", None),
                               ("GET", "analytics/endpoints/logs.all", None), ("GET", "api-keys/legacy", None)):
        r = http.request(method, f"/v1/projects/{ref}/{path}", token=stranger, json=body)
        assert r.status_code == 404, (path, r.status_code, r.text)
    r = http.post(f"/v1/projects/{ref}/database/query", json={"query": "select 1"})
    assert r.status_code == 401


def test_table_editor_routes(http: Any, project: dict[str, Any]) -> None:
    ref, tok = project["ref"], project["token"]
    base = f"/platform/projects/{ref}/database/tables"
    r = http.post(base, token=tok, json={"name": "books", "columns": [
        {"name": "id", "type": "bigint", "primary_key": True, "identity": True},
        {"name": "title", "type": "text", "nullable": False}, {"name": "pages", "type": "integer"}]})
    assert r.status_code == 201, r.text
    assert [c["name"] for c in r.json()["columns"]] == ["id", "title", "pages"]
    # Bad names and types never reach PostgreSQL as SQL.
    bad = http.post(base, token=tok, json={"name": "x; drop table books", "columns": [{"name": "a", "type": "text"}]})
    assert bad.status_code == 400
    bad = http.post(base, token=tok, json={"name": "y", "columns": [{"name": "a", "type": "text); drop table books;--"}]})
    assert bad.status_code == 400

    for title, pages in (("Dune", "412"), ("Emma", "300"), ("Ulysses", "730")):
        r = http.post(f"{base}/public/books/rows", token=tok, json={"values": {"title": title, "pages": pages}})
        assert r.status_code == 201, r.text
    page = http.get(f"{base}/public/books/rows", token=tok, params={"limit": 2}).json()
    assert page["total"] == 3 and [x["title"] for x in page["rows"]] == ["Dune", "Emma"]
    page = http.get(f"{base}/public/books/rows", token=tok, params={"limit": 2, "offset": 2}).json()
    assert [x["title"] for x in page["rows"]] == ["Ulysses"]
    page = http.get(f"{base}/public/books/rows", token=tok, params=[("filter", "pages.gt.350")]).json()
    assert sorted(x["title"] for x in page["rows"]) == ["Dune", "Ulysses"]
    page = http.get(f"{base}/public/books/rows", token=tok, params=[("filter", "title.ilike.%mm%")]).json()
    assert [x["title"] for x in page["rows"]] == ["Emma"]
    assert http.get(f"{base}/public/books/rows", token=tok, params=[("filter", "nope.eq.1")]).status_code == 400

    emma = page["rows"][0]
    r = http.request("PATCH", f"{base}/public/books/rows", token=tok,
                     json={"match": {"id": emma["id"]}, "values": {"pages": 301}})
    assert r.status_code == 200 and r.json()["pages"] == 301, r.text
    r = http.request("DELETE", f"{base}/public/books/rows", token=tok, json={"match": {"id": emma["id"]}})
    assert r.status_code == 200
    assert http.request("DELETE", f"{base}/public/books/rows", token=tok,
                        json={"match": {"id": emma["id"]}}).status_code == 404
    # A type error is PostgreSQL's message, and nothing is inserted.
    r = http.post(f"{base}/public/books/rows", token=tok, json={"values": {"title": "X", "pages": "many"}})
    assert r.status_code == 400 and "invalid input syntax" in r.json()["message"]
    assert http.get(f"{base}/public/books/rows", token=tok).json()["total"] == 2
    tables = http.get(base, token=tok).json()
    assert [t["name"] for t in tables] == ["books"] and tables[0]["rls_enabled"] is False


def test_saved_snippets_are_each_users_own(http: Any, project: dict[str, Any], rpc: Any, settings: Any) -> None:
    ref, tok = project["ref"], project["token"]
    base = f"/platform/projects/{ref}/database/snippets"
    r = http.post(base, token=tok, json={"name": "count todos", "sql": "select count(*) from todos"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = http.request("PUT", f"{base}/{sid}", token=tok, json={"name": "count", "sql": "select 1"})
    assert r.status_code == 200 and r.json()["name"] == "count"
    assert [s["name"] for s in http.get(base, token=tok).json()] == ["count"]
    assert http.post(base, token=tok, json={"name": "", "sql": "x"}).status_code == 400

    # Another member of the organization sees none of them and cannot change them.
    other = f"other-{uuid.uuid4().hex[:8]}@example.com"
    user = rpc.orgs.register_user(other, "correct horse battery")
    assert http.post(f"/platform/organizations/{project['org']}/invitations", token=tok,
                     json={"email": other, "role": "member"}).status_code == 201
    rpc.orgs.accept_invitation(user["id"], latest_mail_token(settings, other))
    otok = rpc.orgs.issue_token(other, "tests")["token"]
    assert http.get(base, token=otok).json() == []
    assert http.request("PUT", f"{base}/{sid}", token=otok, json={"name": "x", "sql": "y"}).status_code == 404
    assert http.request("DELETE", f"{base}/{sid}", token=otok).status_code == 404
    assert http.request("DELETE", f"{base}/not-a-uuid", token=tok).status_code == 404
    assert http.request("DELETE", f"{base}/{sid}", token=tok).status_code == 204
    assert http.get(base, token=tok).json() == []
