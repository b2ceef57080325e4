"""Postgres changes through a project's URL only, driven by the real `@supabase/supabase-js` /
realtime-js on Node (tests/js/realtime_changes.mjs) against the real platform (edge, realtime
server, CDC engine on the tenant's database): INSERT/UPDATE/DELETE callbacks in Supabase's
payload shape for both serializer versions, filters, rows hidden by RLS never sent, the
publication toggled through the platform route changing what is sent, the realtime server
killed with SIGKILL losing nothing committed after the client rejoined, and no replication
slot left behind by a restart or by pause and delete.

Waiting is on states, never on time: every scenario ends with a sentinel row committed last;
changes reach each subscriber in commit order, so once the sentinel arrived, anything that
was going to arrive has.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest

from services.realtime.server.cdc.engine import slot_name
from services.shared.runner import Platform
from services.shared.settings import Settings
from tests.integration.test_project_auth_storage import tenant_sql
from tests.integration.test_project_lifecycle import wait_status
from tests.integration.test_realtime import Http, make_project
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js" / "realtime_changes.mjs"
pytestmark = pytest.mark.timeout(300)
ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())

SETUP = """
create table public.todos (id bigint primary key, title text, done boolean default false);
create table public.marks (id int primary key, note text);
create table public.secrets (id int primary key, owner_id uuid, title text, shared boolean default false);
alter table public.secrets enable row level security;
create policy mine on public.secrets for select to authenticated using (owner_id = auth.uid() or shared);
grant all on public.todos, public.marks, public.secrets to anon, authenticated, service_role;
"""


def sign(secret: str, ref: str, role: str, sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"role": role, "iss": "supabase", "ref": ref, "iat": now, "exp": now + 3600, "sub": sub,
                       "aud": "authenticated"}, secret, algorithm="HS256")


def slots(settings: Settings, ref: str) -> list[tuple[str, bool]]:
    with psycopg.connect(settings.conninfo_for("postgres"), autocommit=True) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT slot_name, temporary FROM pg_replication_slots WHERE database = %s", (ref,)).fetchall()]


class Js:
    """The Node scenario as a child: its JSON lines read one at a time."""

    def __init__(self, scenario: str, config: dict[str, Any]):
        self.proc = subprocess.Popen(["node", str(JS), scenario], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(config).encode())
        self.proc.stdin.close()

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = self.proc.stdout.readline().decode()
        if not raw:
            self.proc.wait(10)
            raise AssertionError(f"the scenario ended early: {self.proc.stderr.read().decode()[-3000:]}")
        line = dict(json.loads(raw))
        if "error" in line:
            raise AssertionError(json.dumps(line, indent=1)[-6000:])
        return line

    def result(self, timeout: float = 120) -> dict[str, Any]:
        self.proc.stdin = None  # closed already: communicate must not flush it
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, (out.decode()[-3000:], err.decode()[-3000:])
        return dict(json.loads(out.decode().strip().splitlines()[-1]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def project(platform: Platform, rpc: Any, gateway_url: str, edge_url: str, settings: Settings) -> dict[str, Any]:
    http = Http(gateway_url)
    email = f"cdc-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(email, "correct horse battery")
    token = rpc.orgs.issue_token(email, "tests")["token"]
    p = make_project(http, token, "changes")
    p["jwt_secret"] = rpc.projects.edge_tenant(p["ref"])["jwt_secret"]
    p["http"] = http
    p["url"] = f"{edge_url}/{p['ref']}"
    tenant_sql(settings, p["ref"], SETUP)
    publish(p, {"tables": [{"schema": "public", "name": n, "published": True} for n in ("todos", "marks", "secrets")]
                + [{"schema": "public", "name": "secrets", "replica_identity_full": True}]}, expect=400)
    publish(p, {"tables": [{"schema": "public", "name": "todos", "published": True},
                           {"schema": "public", "name": "marks", "published": True},
                           {"schema": "public", "name": "secrets", "published": True, "replica_identity_full": True}]})
    return p


def publish(p: dict[str, Any], body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    r = p["http"].request("PUT", f"/platform/projects/{p['ref']}/realtime/publication", token=p["token"], json=body)
    assert r.status_code == expect, r.text
    return dict(r.json())


def summary(got: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(g["table"], g["eventType"], (g["new"] or {}).get("id", (g["old"] or {}).get("id"))) for g in got]


@pytest.mark.parametrize("vsn", ["1.0.0", "2.0.0"])
def test_callbacks_filters_rls_and_publication_toggles(project: dict[str, Any], settings: Settings, vsn: str) -> None:
    ref = project["ref"]
    tenant_sql(settings, ref, "delete from todos; delete from marks; delete from secrets")
    # Each change is checked against the row as it is when the change is read (as Supabase
    # does): the row deleted during the test exists before it, so no insert races its delete.
    tenant_sql(settings, ref, f"insert into secrets (id, owner_id, title) values (5, '{ALICE}', 'old alice secret')")
    js = Js("changes", {"url": project["url"], "anon": project["anon"], "vsn": vsn,
                        "alice": sign(project["jwt_secret"], ref, "authenticated", ALICE),
                        "bob": sign(project["jwt_secret"], ref, "authenticated", BOB)})
    try:
        assert js.line() == {"ready": True}
        tenant_sql(settings, ref, "insert into todos (id, title) values (1, 'one'), (2, 'two')")
        tenant_sql(settings, ref, "update todos set done = true where id = 1")
        tenant_sql(settings, ref, "update todos set title = 'deux' where id = 2")
        tenant_sql(settings, ref, "delete from todos where id = 1")
        tenant_sql(settings, ref, f"insert into secrets (id, owner_id, title) values (1, '{ALICE}', 'alice secret'), "
                                  f"(2, '{BOB}', 'bob secret')")
        tenant_sql(settings, ref, "delete from secrets where id = 5")
        # Out of the publication (through the platform): its changes stop; back in: they flow again.
        assert publish(project, {"tables": [{"schema": "public", "name": "todos", "published": False}]})[
            "changed"]["removed"] == ["public.todos"]
        tenant_sql(settings, ref, "insert into todos (id, title) values (3, 'unpublished')")
        publish(project, {"tables": [{"schema": "public", "name": "todos", "published": True}]})
        tenant_sql(settings, ref, "insert into todos (id, title) values (4, 'back')")
        # The sentinel, committed last.
        tenant_sql(settings, ref, "insert into marks values (999, 'done'); "
                                  "insert into secrets (id, title, shared) values (999, 'sentinel', true)")
        out = js.result()
    finally:
        js.stop()

    assert summary(out["todos"]) == [("todos", "INSERT", 1), ("todos", "INSERT", 2), ("todos", "UPDATE", 1),
                                     ("todos", "UPDATE", 2), ("todos", "DELETE", 1), ("todos", "INSERT", 4)]
    # anon sees no secrets row, only their deletes (key only), as every subscriber of the table does.
    assert summary(out["all"]) == summary(out["todos"])[:5] + [("secrets", "DELETE", 5), ("todos", "INSERT", 4),
                                                                ("marks", "INSERT", 999)]
    assert out["all"][5]["old"] == {"id": 5} and out["all"][5]["new"] == {}
    # Supabase's shape, as realtime-js hands it to the callback.
    ins, upd, dele = out["todos"][0], out["todos"][2], out["todos"][4]
    assert {k: v for k, v in ins.items() if k != "_at"} == {
        "schema": "public", "table": "todos", "commit_timestamp": ins["commit_timestamp"], "eventType": "INSERT",
        "new": {"id": 1, "title": "one", "done": False}, "old": {}, "errors": None}
    assert ins["commit_timestamp"].endswith("Z") and ins["commit_timestamp"][:4].isdigit()
    assert upd["new"] == {"id": 1, "title": "one", "done": True} and upd["old"] == {"id": 1}
    assert dele["new"] == {} and dele["old"] == {"id": 1}
    # Filters: id=eq.2 (deletes are not filtered, as in Supabase); id=in.(1,3) on updates.
    assert summary(out["filtered"]) == [("todos", "INSERT", 2), ("todos", "UPDATE", 2), ("todos", "DELETE", 1)]
    assert summary(out["gt"]) == [("todos", "UPDATE", 1)]
    assert summary(out["inserts"]) == [("todos", "INSERT", 1), ("todos", "INSERT", 2), ("todos", "INSERT", 4),
                                       ("marks", "INSERT", 999)]
    # RLS: each user gets only the rows the policy shows them; a delete (not checkable against
    # a gone row) reaches both with its primary key only, though the table has replica identity full.
    assert summary(out["a"]) == [("secrets", "INSERT", 1), ("secrets", "DELETE", 5), ("secrets", "INSERT", 999)]
    assert summary(out["b"]) == [("secrets", "INSERT", 2), ("secrets", "DELETE", 5), ("secrets", "INSERT", 999)]
    assert out["a"][1]["old"] == {"id": 5} and out["b"][1]["old"] == {"id": 5}
    assert "bob secret" not in json.dumps(out["a"]) and "alice secret" not in json.dumps(out["b"])
    assert not any(g["table"] == "secrets" and g["eventType"] != "DELETE" for g in out["all"])
    # A bad filter: the channel is refused with Supabase's reason.
    assert any(s.startswith("CHANNEL_ERROR") and "filter" in s for s in out["bad"]), out["bad"]


def test_kill9_loses_nothing_committed_after_the_rejoin_and_leaks_no_slot(
        project: dict[str, Any], settings: Settings, platform: Platform) -> None:
    ref = project["ref"]
    js = Js("reconnect", {"url": project["url"], "anon": project["anon"], "vsn": "2.0.0"})
    try:
        assert js.line() == {"ready": True}
        assert [n for n, _ in slots(settings, ref)] == [slot_name(ref)]
        tenant_sql(settings, ref, "insert into todos (id, title) values (100, 'before the kill')")
        old = platform.procs["realtime-server"]
        os.kill(old.pid, signal.SIGKILL)

        def restarted() -> bool:
            platform.supervise()
            new = platform.procs["realtime-server"]
            return new is not old and new.poll() is None

        wait_for("the realtime server restarted by the supervisor", restarted, timeout=30)
        assert js.line() == {"rejoined": True}
        # The killed server's slot went with its session; the new one holds the only one.
        assert slots(settings, ref) == [(slot_name(ref), True)]
        for i in (101, 102, 103):
            tenant_sql(settings, ref, f"insert into todos (id, title) values ({i}, 'after the rejoin')")
        tenant_sql(settings, ref, "update todos set title = 'changed after' where id = 101")
        tenant_sql(settings, ref, "insert into todos (id, title) values (999, 'sentinel')")
        out = js.result()
    finally:
        js.stop()
    # Whether realtime-js rejoined by itself or (its rejoin wedged, see the scenario) a new
    # client subscribed: every change committed after the subscription is back is delivered.
    print("resubscribed with a new client:", out.get("resubscribed"))
    after = [s for s in summary(out["got"]) if s[2] != 100]
    assert after == [("todos", "INSERT", 101), ("todos", "INSERT", 102), ("todos", "INSERT", 103),
                     ("todos", "UPDATE", 101), ("todos", "INSERT", 999)], out["got"]
    assert len(slots(settings, ref)) <= 1


def test_pause_and_delete_leave_no_slot(project: dict[str, Any], settings: Settings, rpc: Any) -> None:
    ref, http, tok = project["ref"], project["http"], project["token"]
    js = Js("reconnect", {"url": project["url"], "anon": project["anon"], "vsn": "1.0.0"})
    try:
        assert js.line() == {"ready": True}
        assert len(slots(settings, ref)) == 1
    finally:
        js.stop()
    assert http.post(f"/v1/projects/{ref}/pause", token=tok).status_code == 200
    wait_status(http, tok, ref, {"INACTIVE"}, timeout=120)
    assert slots(settings, ref) == []
    r = http.request("DELETE", f"/v1/projects/{ref}", token=tok)
    assert r.status_code == 200, r.text
    wait_for("the project removed", lambda: http.get(f"/platform/projects/{ref}", token=tok).status_code == 404
             or http.get(f"/platform/projects/{ref}", token=tok).json().get("status") == "REMOVED", timeout=120)
    with psycopg.connect(settings.conninfo_for("postgres"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (slot_name(ref),)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s",
                            (f"supabase_realtime_admin.{ref}",)).fetchone()[0] == 0
