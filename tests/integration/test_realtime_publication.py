"""A project's Postgres changes configuration end to end through the gateway: which tables
are in the tenant's `supabase_realtime` publication, its actions and each table's replica
identity, read from and changed in the project's real database by the realtime service,
recorded as events; who may read and change it; bad input refused with nothing changed."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.integration.test_realtime_config import member, project  # noqa: F401  (fixture)


def sql(http: Any, ref: str, tok: str, query: str) -> Any:
    r = http.post(f"/v1/projects/{ref}/database/query", token=tok, json={"query": query})
    assert r.status_code in (200, 201), r.text
    return r.json()


def table(state: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in state["tables"] if (t["schema"], t["name"]) == ("public", name))


def test_publication_toggles_through_the_platform(http: Any, rpc: Any, settings: Any, project: dict[str, Any]) -> None:  # noqa: F811
    ref, tok = project["ref"], project["token"]
    base = f"/platform/projects/{ref}/realtime/publication"
    sql(http, ref, tok, "create table public.todos (id bigint primary key, title text); "
                        "create table public.nokey (v text)")

    # A new project: the publication exists, publishes every action, has no tables.
    r = http.get(base, token=tok)
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["exists"] and st["actions"] == {"insert": True, "update": True, "delete": True, "truncate": True}
    assert st["can_change"] is True
    assert table(st, "todos") == {"schema": "public", "name": "todos", "published": False,
                                  "replica_identity_full": False, "rls_enabled": False, "has_primary_key": True}
    assert table(st, "nokey")["has_primary_key"] is False
    assert not any(t["schema"] in ("auth", "storage", "realtime") for t in st["tables"])

    # Publish todos with replica identity full, and stop publishing truncates.
    r = http.request("PUT", base, token=tok, json={"tables": [{"schema": "public", "name": "todos", "published": True,
                                                     "replica_identity_full": True}],
                                         "actions": {"truncate": False}})
    assert r.status_code == 200, r.text
    st = r.json()
    assert table(st, "todos")["published"] and table(st, "todos")["replica_identity_full"]
    assert st["actions"]["truncate"] is False
    assert st["changed"] == {"added": ["public.todos"], "removed": [], "replica_identity": {"public.todos": [False, True]},
                             "actions": {"truncate": [True, False]}}
    # In the tenant's database itself.
    rows = sql(http, ref, tok, "select (select count(*) from pg_publication_tables where pubname = 'supabase_realtime' "
                               "and tablename = 'todos') as n, (select relreplident::text from pg_class "
                               "where oid = 'public.todos'::regclass) as ident, (select pubtruncate from pg_publication "
                               "where pubname = 'supabase_realtime') as tr")
    assert rows == [{"n": 1, "ident": "f", "tr": False}]

    # The same PUT again changes nothing and records nothing.
    again = http.request("PUT", base, token=tok, json={"tables": [{"schema": "public", "name": "todos", "published": True}]})
    assert again.status_code == 200 and again.json()["changed"] == {"added": [], "removed": [], "replica_identity": {},
                                                                    "actions": {}}
    history = rpc.realtime.publication_history(ref)
    assert len(history) == 1 and history[0]["added"] == ["public.todos"]

    # Bad input: a clear 400, nothing changed.
    for body in ({"tables": [{"schema": "public", "name": "nope", "published": True}]},
                 {"tables": [{"schema": "public", "name": "todos", "published": "yes"}]},
                 {"actions": {"merge": True}}, {"colour": "red"},
                 {"tables": [{"schema": "auth", "name": "users", "published": True}]}):
        bad = http.request("PUT", base, token=tok, json=body)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json().get("message") or bad.json().get("error"), bad.text
    assert http.get(base, token=tok).json()["tables"] == st["tables"]

    # Remove it again.
    r = http.request("PUT", base, token=tok, json={"tables": [{"schema": "public", "name": "todos", "published": False}]})
    assert r.status_code == 200 and not table(r.json(), "todos")["published"]
    assert len(rpc.realtime.publication_history(ref)) == 2


def test_who_may_see_and_change_the_publication(http: Any, rpc: Any, settings: Any, project: dict[str, Any],  # noqa: F811
                                                user_token: dict[str, str]) -> None:
    ref, tok, org = project["ref"], project["token"], project["org"]
    base = f"/platform/projects/{ref}/realtime/publication"
    sql(http, ref, tok, "create table public.t1 (id int primary key)")
    reader = member(http, rpc, settings, tok, org, "read_only")
    r = http.get(base, token=reader)
    assert r.status_code == 200 and r.json()["can_change"] is False
    r = http.request("PUT", base, token=reader, json={"tables": [{"schema": "public", "name": "t1", "published": True}]})
    assert r.status_code == 403, r.text
    # A stranger learns nothing about the project.
    stranger = rpc.orgs.register_user(f"stranger-{ref}@example.com", "correct horse battery")
    stoken = rpc.orgs.issue_token(f"stranger-{ref}@example.com", "t")["token"]
    assert stranger and http.get(base, token=stoken).status_code == 404
    assert not table(http.get(base, token=tok).json(), "t1")["published"]
    _ = psycopg  # the database is only reached through the platform here
