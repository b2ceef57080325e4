"""Postgres changes on the real PostgreSQL: a tenant made by the local driver, its realtime
login (REPLICATION, its own database only) holding a temporary pgoutput slot; INSERT,
UPDATE and DELETE in Supabase's payload shape, filters, RLS per subscriber, publication
membership and actions, replica identity full, and no slot left behind (idle close, a
killed process, pause and delete).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from services.provisioner.drivers.local import owner_role
from services.realtime.server.cdc.engine import CdcProvider, CdcSettings, slot_name
from tests.integration.test_local_driver import PASSWORD, Tenants, admin, hba_enforced, settings  # noqa: F401

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


class FakeSubscriber:
    """What the server hands the provider: ref, role, claims, the join's config, deliver."""

    def __init__(self, ref: str, config: list[dict[str, Any]], role: str = "anon", claims: dict[str, Any] | None = None):
        self.ref = ref
        self.postgres_changes = config
        self.role = role
        self.claims = claims or {"role": role}
        self.got: list[dict[str, Any]] = []
        self.event = asyncio.Event()

    async def deliver(self, payload: dict[str, Any]) -> None:
        self.got.append(payload)
        self.event.set()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {len(self.got)} of {n} changes: {self.got}")
            self.event.clear()
            try:
                await asyncio.wait_for(self.event.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self.got


@pytest.fixture
def tenants(settings, tmp_path: Path, hba_enforced: None) -> Iterator[Tenants]:  # noqa: F811
    from tests.integration.test_local_driver import cleanup
    t = Tenants(settings, tmp_path)
    yield t
    t.plain.close()
    t.with_spares.close()
    for ref in t.refs:
        cleanup(settings, ref)


def owner(settings, ref: str) -> psycopg.Connection:  # noqa: F811
    return psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                           user=owner_role(ref), password=PASSWORD, autocommit=True)


def slots(settings, ref: str) -> list[tuple[str, bool]]:  # noqa: F811
    with admin(settings) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT slot_name, temporary FROM pg_replication_slots WHERE database = %s", (ref,)).fetchall()]


def wait_until(cond: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


SETUP = """
CREATE TABLE public.todos (id bigint PRIMARY KEY, title text, done boolean DEFAULT false,
                           meta jsonb, at timestamptz DEFAULT '2026-01-02 03:04:05.678+00', owner_id uuid);
CREATE TABLE public.quiet (id int PRIMARY KEY, v text);
ALTER PUBLICATION supabase_realtime ADD TABLE public.todos;
GRANT ALL ON public.todos, public.quiet TO anon, authenticated, service_role;
"""


def provider_for(tenants: Tenants, **kw: Any) -> CdcProvider:
    async def login(ref: str) -> dict[str, Any]:
        return await asyncio.to_thread(tenants.plain.tenant_login, ref, "realtime")
    return CdcProvider(login, CdcSettings(**{"poll_interval_s": 0.01, "idle_close_s": 0.3, **kw}))


def test_the_realtime_login_has_replication_and_only_its_own_database(tenants: Tenants, settings) -> None:  # noqa: F811
    ref = tenants.create()
    login = tenants.plain.tenant_login(ref, "realtime")
    assert login["user"] == f"supabase_realtime_admin.{ref}" and login["dbname"] == ref
    with admin(settings) as conn:
        row = conn.execute("SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = %s", (login["user"],)).fetchone()
        # The tenant's owner cannot SET ROLE to it (that would hand the tenant REPLICATION).
        member = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (owner_role(ref), login["user"])).fetchone()[0]
    assert row == (True, False) and member is False
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=login["host"], port=login["port"], dbname="postgres", user=login["user"],
                        password=login["password"], connect_timeout=5).close()


def test_insert_update_delete_in_supabases_shape(tenants: Tenants, settings) -> None:  # noqa: F811
    ref = tenants.create()
    with owner(settings, ref) as c:
        c.execute(SETUP)

    async def scenario() -> None:
        p = provider_for(tenants)
        everything = FakeSubscriber(ref, [{"event": "*", "schema": "public", "table": "todos"}])
        inserts = FakeSubscriber(ref, [{"event": "INSERT", "schema": "public"}])
        filtered = FakeSubscriber(ref, [{"event": "*", "schema": "public", "table": "todos", "filter": "id=gt.1"}])
        listed = FakeSubscriber(ref, [{"event": "UPDATE", "schema": "public", "table": "todos", "filter": "id=in.(1,3)"}])
        reply = await p.subscribe(everything)
        assert reply == [{"id": reply[0]["id"], "event": "*", "schema": "public", "table": "todos", "filter": None}]
        assert isinstance(reply[0]["id"], int)
        for s in (inserts, filtered, listed):
            await p.subscribe(s)
        assert [n for n, _ in slots(settings, ref)] == [slot_name(ref)]

        def dml() -> None:
            with owner(settings, ref) as c:
                c.execute("""INSERT INTO todos (id, title, meta) VALUES (1, 'one', '{"a": [1]}')""")
                c.execute("INSERT INTO quiet VALUES (1, 'not published')")
                c.execute("UPDATE todos SET done = true WHERE id = 1")
                c.execute("DELETE FROM todos WHERE id = 1")
                c.execute("INSERT INTO todos (id, title) VALUES (2, 'two')")
        await asyncio.to_thread(dml)
        got = await everything.wait_for(4)
        assert [g["data"]["type"] for g in got] == ["INSERT", "UPDATE", "DELETE", "INSERT"]
        assert all(g["ids"] == [reply[0]["id"]] for g in got)
        ins = got[0]["data"]
        assert ins["schema"] == "public" and ins["table"] == "todos" and ins["errors"] is None
        assert ins["record"] == {"id": 1, "title": "one", "done": False, "meta": {"a": [1]},
                                 "at": "2026-01-02T03:04:05.678+00:00", "owner_id": None}
        assert "old_record" not in ins
        assert ins["columns"][:3] == [{"name": "id", "type": "int8"}, {"name": "title", "type": "text"},
                                      {"name": "done", "type": "bool"}]
        assert ins["commit_timestamp"].endswith("Z") and len(ins["commit_timestamp"]) == 24
        upd = got[1]["data"]
        assert upd["record"]["done"] is True and upd["old_record"] == {"id": 1}
        dele = got[2]["data"]
        assert dele["old_record"] == {"id": 1} and "record" not in dele
        # Only inserts, of any published table in the schema (quiet is not published).
        got_ins = await inserts.wait_for(2)
        assert [g["data"]["record"]["id"] for g in got_ins] == [1, 2]
        # id=gt.1: the insert of 2, and the delete (deletes are not filtered, as in Supabase).
        got_f = await filtered.wait_for(2)
        assert [(g["data"]["type"]) for g in got_f] == ["DELETE", "INSERT"]
        assert got_f[1]["data"]["record"]["id"] == 2
        assert [g["data"]["type"] for g in await listed.wait_for(1)] == ["UPDATE"]
        await asyncio.sleep(0.2)
        assert len(everything.got) == 4 and len(inserts.got) == 2 and len(listed.got) == 1

        # REPLICA IDENTITY FULL: the whole old row (no RLS on this table).
        await asyncio.to_thread(lambda: owner(settings, ref).execute(
            "ALTER TABLE todos REPLICA IDENTITY FULL; UPDATE todos SET title = 'deux' WHERE id = 2; "
            "DELETE FROM todos WHERE id = 2"))
        more = await everything.wait_for(6)
        assert more[4]["data"]["old_record"]["title"] == "two"
        assert more[5]["data"]["old_record"]["title"] == "deux" and more[5]["data"]["old_record"]["id"] == 2

        for s in (everything, inserts, filtered, listed):
            await p.unsubscribe(s)
        # No subscribers for idle_close_s: the slot is given up.
        deadline = time.monotonic() + 10
        while slots(settings, ref) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert slots(settings, ref) == []
        await p.close()

    asyncio.run(scenario())


def test_rls_hides_rows_per_subscriber_and_deletes_show_only_the_key(tenants: Tenants, settings) -> None:  # noqa: F811
    ref = tenants.create()
    alice, bob = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    with owner(settings, ref) as c:
        c.execute(SETUP)
        c.execute("ALTER TABLE todos ENABLE ROW LEVEL SECURITY; ALTER TABLE todos REPLICA IDENTITY FULL; "
                  "CREATE POLICY own ON todos FOR SELECT TO authenticated USING (owner_id = auth.uid())")

    async def scenario() -> None:
        p = provider_for(tenants)
        cfg = [{"event": "*", "schema": "public", "table": "todos"}]
        a = FakeSubscriber(ref, cfg, "authenticated", {"role": "authenticated", "sub": alice})
        b = FakeSubscriber(ref, cfg, "authenticated", {"role": "authenticated", "sub": bob})
        anon = FakeSubscriber(ref, cfg, "anon")
        svc = FakeSubscriber(ref, cfg, "service_role")
        for s in (a, b, anon, svc):
            await p.subscribe(s)

        def dml(*queries: tuple[str, tuple[Any, ...]]) -> None:
            with owner(settings, ref) as c:
                for q, args in queries:
                    c.execute(q, args)
        # Each change is checked against the row as it is when the change is read (as
        # Supabase does): the delete waits until the inserts were delivered.
        await asyncio.to_thread(dml, ("INSERT INTO todos (id, title, owner_id) VALUES (1, 'alice secret', %s)", (alice,)),
                                ("INSERT INTO todos (id, title, owner_id) VALUES (2, 'bob secret', %s)", (bob,)),
                                ("UPDATE todos SET title = 'alice 2' WHERE id = 1", ()))
        await svc.wait_for(3)
        await asyncio.to_thread(dml, ("DELETE FROM todos WHERE id = 2", ()))
        got_svc = await svc.wait_for(4)  # service_role bypasses RLS
        assert [g["data"]["type"] for g in got_svc] == ["INSERT", "INSERT", "UPDATE", "DELETE"]
        got_a = await a.wait_for(3)
        got_b = await b.wait_for(2)
        await asyncio.sleep(0.3)
        assert [(g["data"]["type"], g["data"].get("record", {}).get("title")) for g in got_a] == [
            ("INSERT", "alice secret"), ("UPDATE", "alice 2"), ("DELETE", None)]
        assert [(g["data"]["type"], g["data"].get("record", {}).get("title")) for g in got_b] == [
            ("INSERT", "bob secret"), ("DELETE", None)]
        # A delete cannot be checked against a gone row: it goes to all, with the key only.
        assert got_a[2]["data"]["old_record"] == {"id": 2} == got_b[1]["data"]["old_record"]
        # anon sees no row through the policy, only the (key-only) delete.
        assert [g["data"]["type"] for g in anon.got] == ["DELETE"]
        assert not any("secret" in str(g) for g in anon.got)
        assert not any("bob secret" in str(g) for g in got_a) and not any("alice" in str(g) for g in got_b)
        await p.close()

    asyncio.run(scenario())


def test_publication_membership_and_actions_decide_what_is_sent(tenants: Tenants, settings) -> None:  # noqa: F811
    ref = tenants.create()
    with owner(settings, ref) as c:
        c.execute(SETUP)

    async def scenario() -> None:
        p = provider_for(tenants)
        s = FakeSubscriber(ref, [{"event": "*", "schema": "public"}])
        await p.subscribe(s)

        def step(q: str) -> None:
            with owner(settings, ref) as c:
                c.execute(q)
        await asyncio.to_thread(step, "INSERT INTO quiet VALUES (1, 'before')")
        await asyncio.to_thread(step, "ALTER PUBLICATION supabase_realtime ADD TABLE quiet")
        await asyncio.to_thread(step, "INSERT INTO quiet VALUES (2, 'after')")
        got = await s.wait_for(1)
        assert got[0]["data"]["table"] == "quiet" and got[0]["data"]["record"]["id"] == 2
        await asyncio.to_thread(step, "ALTER PUBLICATION supabase_realtime SET (publish = 'insert')")
        await asyncio.to_thread(step, "UPDATE quiet SET v = 'x'; DELETE FROM quiet; INSERT INTO quiet VALUES (3, 'y')")
        got = await s.wait_for(2)
        await asyncio.sleep(0.2)
        assert [g["data"]["type"] for g in got] == ["INSERT", "INSERT"]
        await p.close()
        assert slots(settings, ref) == []

    asyncio.run(scenario())


def test_bad_bindings_are_refused(tenants: Tenants) -> None:
    from services.realtime.server.changes import ChangesRefused

    async def scenario() -> None:
        p = provider_for(tenants)
        for cfg in ([{"event": "TRUNCATE", "schema": "public"}], [{"event": "*"}],
                    [{"event": "*", "schema": "public", "table": "t", "filter": "id=like.5"}],
                    [{"event": "*", "schema": "public", "table": "t", "filter": "nonsense"}]):
            with pytest.raises(ChangesRefused):
                await p.subscribe(FakeSubscriber("abcdefghijabcdefghij", cfg))
        assert p.streams == {}

    asyncio.run(scenario())


HOLDER = """
import asyncio, json, sys
from services.realtime.server.cdc.engine import CdcProvider, CdcSettings
login = json.loads(sys.argv[1])
class S:
    ref = login["dbname"]; role = "anon"; claims = {}; postgres_changes = [{"event": "*", "schema": "public"}]
    async def deliver(self, p): pass
async def main():
    async def get(ref): return login
    p = CdcProvider(get, CdcSettings(poll_interval_s=0.05))
    await p.subscribe(S())
    print("ready", flush=True)
    await asyncio.sleep(300)
asyncio.run(main())
"""


def test_a_killed_server_leaves_no_slot_and_a_restarted_one_takes_the_name(tenants: Tenants, settings) -> None:  # noqa: F811
    import json
    ref = tenants.create()
    login = tenants.plain.tenant_login(ref, "realtime")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps(login)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert slots(settings, ref) == [(slot_name(ref), True)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: slots(settings, ref) == [], what="the killed holder's slot to go")
    finally:
        if proc.poll() is None:
            proc.kill()
    # A permanent slot of the same name (left by anyone) is taken over, not an error.
    with psycopg.connect(host=login["host"], port=login["port"], dbname=ref, user=login["user"],
                         password=login["password"], autocommit=True) as c:
        c.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput', false)", (slot_name(ref),))

    async def scenario() -> None:
        p = provider_for(tenants)
        s = FakeSubscriber(ref, [{"event": "*", "schema": "public"}])
        await p.subscribe(s)
        assert slots(settings, ref) == [(slot_name(ref), True)]
        await p.close()
    asyncio.run(scenario())
    assert slots(settings, ref) == []


def test_pause_and_delete_end_the_slot(tenants: Tenants, settings) -> None:  # noqa: F811
    ref = tenants.create()

    async def scenario() -> None:
        p = provider_for(tenants, reconnect_max_s=0.2)
        s = FakeSubscriber(ref, [{"event": "*", "schema": "public"}])
        await p.subscribe(s)
        assert len(slots(settings, ref)) == 1
        await asyncio.to_thread(tenants.run, "pause", ref)
        # The pause ended the session (and with it the slot); the login cannot come back.
        deadline = time.monotonic() + 10
        while p.streams[ref].stats["errors"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert p.streams[ref].stats["errors"] > 0
        await p.close()

    asyncio.run(scenario())
    with admin(settings) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (slot_name(ref),)).fetchone()[0] == 0
    tenants.run("restore", ref)
    tenants.run("delete", ref)
    with admin(settings) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (slot_name(ref),)).fetchone()[0] == 0
