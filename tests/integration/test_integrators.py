"""Consumers for integrators: `platformctl consumers create --from 0` back-fills history, then
live events flow; the example consumer (docs/examples, written against the AsyncAPI document
only) receives every event of its types exactly once by event_id; the broker user reads only
its own queue; list, lag and delete."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import amqp
import psycopg
import pytest

from services.shared.platformctl import open_store, relay_lag_of
from services.shared.rabbitadmin import RabbitAdmin
from services.shared.relay import message_for
from services.shared.runner import ROOT
from services.shared.settings import Settings
from tests.integration.test_platformctl import Result, ctl  # noqa: F401 -- the fixture
from tests.integration.test_project_lifecycle import new_org, wait_status
from tests.support import wait_for

EXAMPLE = ROOT / "docs" / "examples" / "integrator_consumer.py"
TYPES = ("organization_created", "organization_updated")


def stored_event_ids(settings: Settings) -> set[str]:
    """Every event_id of TYPES in the orgs store, as the relay builds them."""
    ids = set()
    with open_store("orgs", settings) as (spec, app):
        for n in app.recorder.select_notifications(1, limit=1_000_000):
            routed = message_for(spec, app.mapper.to_domain_event(n), n.id)
            if routed and routed[0] in TYPES:
                ids.add(routed[1]["event_id"])
    return ids


def received(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT event_id FROM received")]
        except sqlite3.OperationalError:  # the consumer has not created its table yet
            return []


def test_outside_consumer_gets_history_then_live_events_exactly_once(
        http: Any, user_token: dict[str, str], settings: Settings, tmp_path: Path,
        ctl: Callable[..., Result]) -> None:  # noqa: F811
    token = user_token["token"]
    # History before the consumer exists.
    past = [new_org(http, token, f"Before {i}") for i in range(2)]
    name = f"crm-{uuid.uuid4().hex[:8]}"
    r = ctl("consumers", "create", name, "--events", ",".join(TYPES), "--from", "0")
    assert r.code == 0, r.err
    url = r.out.strip().splitlines()[-1]
    assert url.startswith("amqp://") and "back-filled" in r.out
    queue = f"integration.{name}"

    db = tmp_path / "crm.sqlite"
    consumer = subprocess.Popen([sys.executable, str(EXAMPLE), "--url", url, "--queue", queue, "--db", str(db)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Live events after it was created.
        live = new_org(http, token, "After")
        assert http.request("PATCH", f"/platform/organizations/{live}", token=token,
                            json={"name": "After Renamed"}).status_code == 200
        def orgs_published() -> bool:
            with psycopg.connect(settings.db_conninfo, autocommit=True) as conn:
                position, newest = relay_lag_of(settings, "orgs", conn)
            return position >= newest
        wait_for("the relay to publish orgs' events", orgs_published)
        expected = stored_event_ids(settings)
        assert len(expected) >= 4  # at least our 3 creations and the rename
        wait_for("every event at the consumer", lambda: set(received(db)) >= expected, timeout=60)

        # Replays and redeliveries bring the same ids again: nothing is applied twice.
        again = ctl("events", "replay", "--service", "orgs", "--from", "0", "--consumer", queue)
        assert again.code == 0 and f"to {queue}" in again.out, again.err
        admin = RabbitAdmin(settings)
        wait_for("the replay to be consumed", lambda: (q := admin.queue(queue)) is not None and
                 q.get("messages", 1) == 0 and q.get("messages_ready", 1) == 0, timeout=60)
        ids = received(db)
        assert len(ids) == len(set(ids)) and set(ids) == expected, (len(ids), len(expected))
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM rejected").fetchone()[0] == 0
            slugs = {r[0] for r in conn.execute(
                "SELECT json_extract(payload, '$.slug') FROM received WHERE event_type = 'organization_created'")}
        assert set(past) | {live} <= slugs

        lst = ctl("consumers", "list")
        assert lst.code == 0 and name in lst.out and "organization_created,organization_updated" in lst.out
        # The management API samples consumer counts every few seconds.
        lag = wait_for("lag to show the consumer connected",
                       lambda: (x := ctl("consumers", "lag", name)).code == 0 and "1 connection(s)" in x.out and x)
        assert "0 message(s) not yet acknowledged" in lag.out
    finally:
        consumer.terminate()
        consumer.wait(timeout=10)

    # Its broker user reads its own queue only.
    from urllib.parse import unquote, urlparse

    u = urlparse(url)
    conn = amqp.Connection(host=f"{u.hostname}:{u.port}", userid=unquote(u.username or ""),
                           password=unquote(u.password or ""), virtual_host=unquote(u.path[1:]))
    conn.connect()
    try:
        with pytest.raises(amqp.exceptions.AccessRefused):
            conn.channel().basic_get("evt-orgs-organization_created--billing.on_organization_created")
        with pytest.raises(amqp.exceptions.AccessRefused):
            conn.channel().queue_declare("integration.mine", durable=True)
    finally:
        conn.close()

    # Bad input changes nothing; delete removes queue and user.
    bad = ctl("consumers", "create", "other", "--events", "no_such_event")
    assert bad.code == 1 and "unknown event type" in bad.err
    dup = ctl("consumers", "create", name, "--events", "organization_created")
    assert dup.code == 1 and "exists already" in dup.err
    gone = ctl("consumers", "delete", name)
    assert gone.code == 0 and queue in gone.out
    assert RabbitAdmin(settings).queue(queue) is None
    with pytest.raises(amqp.exceptions.AccessRefused):
        amqp.Connection(host=f"{u.hostname}:{u.port}", userid=unquote(u.username or ""),
                        password=unquote(u.password or ""), virtual_host=unquote(u.path[1:])).connect()


def test_a_v1_only_outside_consumer_survives_the_v2_rollout(
        http: Any, user_token: dict[str, str], settings: Settings, tmp_path: Path,
        ctl: Callable[..., Result]) -> None:  # noqa: F811
    token = user_token["token"]
    slug = new_org(http, token, "Evolution")
    name = f"v1only-{uuid.uuid4().hex[:8]}"
    r = ctl("consumers", "create", name, "--events", "project_status_changed", "--from", "0")
    assert r.code == 0, r.err
    url, queue = r.out.strip().splitlines()[-1], f"integration.{name}"
    # Live: a project comes up, and its status change goes out as v2 (with its progress).
    ref = http.post("/v1/projects", token=token, json={"name": "evo", "organization_slug": slug,
                                                       "db_pass": "good-password-1"}).json()["ref"]
    wait_status(http, token, ref, {"ACTIVE_HEALTHY"})
    dbs = {"v1": tmp_path / "v1.sqlite", "any": tmp_path / "any.sqlite"}
    consumer = subprocess.Popen([sys.executable, str(EXAMPLE), "--url", url, "--queue", queue, "--db", str(dbs["v1"]),
                                 "--accept", "project_status_changed:1"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def mine() -> list[tuple[int, str]]:
            if not received(dbs["v1"]):
                return []
            with sqlite3.connect(dbs["v1"]) as conn:
                return [(v, p) for v, p in conn.execute(
                    "SELECT schema_version, payload FROM received WHERE json_extract(payload, '$.ref') = ?", (ref,))]
        rows = wait_for("the project's status change at the v1 consumer", mine, timeout=60)
        with sqlite3.connect(dbs["v1"]) as conn:
            assert conn.execute("SELECT count(*) FROM rejected").fetchone()[0] == 0
            versions = {v for (v,) in conn.execute("SELECT DISTINCT schema_version FROM received")}
        assert versions == {1}
        assert all(set(json.loads(p)) == {"ref", "org_slug", "status", "reason"} for _, p in rows)
    finally:
        consumer.terminate()
        consumer.wait(timeout=10)
    # The same messages, read by a consumer that accepts v2: they carry the progress.
    again = ctl("events", "replay", "--service", "projects", "--from", "0", "--consumer", queue)
    assert again.code == 0, again.err
    subprocess.run([sys.executable, str(EXAMPLE), "--url", url, "--queue", queue, "--db", str(dbs["any"]),
                    "--idle", "2"], check=True, capture_output=True, timeout=60)
    with sqlite3.connect(dbs["any"]) as conn:
        done = [json.loads(p) for (p,) in conn.execute(
            "SELECT payload FROM received WHERE schema_version = 2 AND json_extract(payload, '$.ref') = ? "
            "AND json_extract(payload, '$.status') = 'ACTIVE_HEALTHY'", (ref,))]
    assert len(done) == 1 and done[0]["total_steps"] and done[0]["step_index"] == done[0]["total_steps"]
    assert ctl("consumers", "delete", name).code == 0
