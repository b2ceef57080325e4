"""platformctl against the running platform: status, events tail/list, replay to one
consumer, projection rebuilds, and bootstrapping a user and a personal access token.

The CLI runs in-process (`main([...])` with the test settings in the environment) except
for one run of the installed console script, `--follow` included.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import amqp
import psycopg
import pytest

from services.orgs.domain import Organization
from services.shared import broker
from services.shared.eventstore import open_application
from services.shared.platformctl import main, relay_lag
from services.shared.probe import ProbeApplication
from services.shared.rabbitadmin import RabbitAdmin
from services.shared.relay import PRODUCERS
from services.shared.runner import ROOT, Platform, child_env
from services.shared.settings import SERVICES, Settings, settings_env
from tests.conftest import ARTIFACTS, free_port
from tests.support import stop_process, wait_for

BILLING_QUEUE = "evt-orgs-organization_created--billing.on_organization_created"


@dataclass
class Result:
    code: int
    out: str
    err: str


FULL_CLUSTER = re.compile(r"too many clients already|remaining connection slots are reserved")


@pytest.fixture
def ctl(settings: Settings, platform: Platform, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run platformctl in-process with the test settings; returns exit code and output."""
    for k, v in settings_env(settings).items():
        monkeypatch.setenv(k, v)

    def once(argv: list[str], env: dict[str, str] | None) -> Result:
        with monkeypatch.context() as m:
            for k, v in (env or {}).items():
                m.setenv(k, v)
            capsys.readouterr()
            try:
                code = main(argv)
            except SystemExit as e:  # argparse's usage errors
                code = int(e.code or 0)
            out, err = capsys.readouterr()
        return Result(code, out, err)

    def run(*argv: str, env: dict[str, str] | None = None) -> Result:
        # The PostgreSQL under the suite is shared with other checkouts' suites: when it has
        # no connection slot left, platformctl cannot even connect (it did nothing yet). Try
        # again after a backoff, as an operator would; any other failure is the result.
        for attempt in range(6):
            r = once(list(argv), env)
            if r.code == 0 or "connection failed" not in r.err or not FULL_CLUSTER.search(r.err) or attempt == 5:
                return r
            time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    return run


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(settings.db_conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def observer(settings: Settings) -> Iterator[Callable[[str], Callable[[], int]]]:
    """A second subscriber: a queue bound to everything on an exchange; returns its depth."""
    conn = broker.connect(settings)
    channel = conn.channel()
    names: list[str] = []

    def observe(producer: str) -> Callable[[], int]:
        name = f"test.observer.{uuid.uuid4().hex[:8]}"
        channel.queue_declare(name, durable=False, auto_delete=False)
        channel.queue_bind(name, broker.declare_exchange(channel, producer), "#")
        names.append(name)
        return lambda: int(channel.queue_declare(name, passive=True).message_count)

    yield observe
    for name in names:
        channel.queue_delete(name)
    conn.close()


@pytest.fixture(scope="module")
def probe_consumer(settings: Settings, platform: Platform) -> Iterator[None]:
    """The probe's consumer process (queue probe.sink); the platform itself does not run one."""
    log_path = ARTIFACTS / "logs" / settings.db_name / "probe_consumer_platformctl.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.shared.probe_consumer"], cwd=ROOT,
                                env=child_env(settings), stdout=log, stderr=subprocess.STDOUT)
    admin = RabbitAdmin(settings)
    try:
        wait_for("the probe consumer", lambda: proc.poll() is not None
                 or ((admin.queue("probe.sink") or {}).get("consumers", 0) > 0))
        assert proc.poll() is None, log_path.read_text()[-2000:]
        yield
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def probe_app(settings: Settings, platform: Platform) -> Iterator[ProbeApplication]:
    app = open_application(ProbeApplication, settings)
    yield app
    app.close()


# -- helpers --------------------------------------------------------------------------------


def subscription(db: psycopg.Connection, slug: str) -> Any:
    return db.execute("SELECT org_slug, plan, started_at, source_event_id FROM billing.subscriptions "
                      "WHERE org_slug = %s", (slug,)).fetchone()


def all_subscriptions(db: psycopg.Connection) -> set[tuple[Any, ...]]:
    return set(db.execute("SELECT org_slug, plan, started_at, source_event_id FROM billing.subscriptions"))


def new_org(rpc: Any, db: psycopg.Connection, user_id: str, name: str) -> dict[str, Any]:
    org = rpc.orgs.create_organization(user_id, name)
    wait_for(f"billing's subscription for {org['slug']}", lambda: subscription(db, org["slug"]))
    return dict(org)


def store_position(db: psycopg.Connection, originator: uuid.UUID, version: int = 1) -> int:
    row = db.execute("SELECT notification_id FROM orgs.orgs_events WHERE originator_id = %s "
                     "AND originator_version = %s", (originator, version)).fetchone()
    assert row, f"no stored event {originator} v{version}"
    return int(row[0])


def created_count(db: psycopg.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM orgs.orgs_events WHERE topic LIKE %s",
                          ("%:Organization.Created",)).fetchone()[0])


def event_rows(out: str) -> list[list[str]]:
    """The event lines of tail/list output, split: service, position, time, version,
    originator, event_type, (topic)."""
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


def probe_effects(db: psycopg.Connection, run_id: str) -> list[tuple[int, int]]:
    return list(db.execute("SELECT seq, applied FROM probe.probe_effects WHERE consumer = 'probe.sink' "
                           "AND run_id = %s ORDER BY seq", (run_id,)))


def settled(settings: Settings) -> bool:
    return all(position == top for position, top in relay_lag(settings).values())


# -- status ---------------------------------------------------------------------------------


def test_status_shows_every_process_up_dead_letters_and_no_relay_lag(
        ctl: Callable[..., Result], rpc: Any, db: psycopg.Connection, settings: Settings,
        user_token: dict[str, str]) -> None:
    # A parked message in some consumer's dead-letter queue must be flagged.
    conn = broker.connect(settings)
    channel = conn.channel()
    channel.queue_declare("platformctl.test.dlq", durable=False, auto_delete=False)
    channel.basic_publish(amqp.Message(b"{}"), exchange="", routing_key="platformctl.test.dlq")
    try:
        # Some traffic through the relay, then let it settle.
        new_org(rpc, db, user_token["user_id"], "Status Check")
        wait_for("the relay to catch up", lambda: settled(settings))

        r = ctl("status")
        assert r.code == 0, r.out + r.err
        for s in SERVICES:
            assert re.search(rf"^\s+{s}\s+up\s+health ok$", r.out, re.M), r.out
        assert re.search(r"^\s+gateway\s+up\s", r.out, re.M), r.out
        assert re.search(rf"^\s+relay\s+up\s+relaying: {', '.join(PRODUCERS)}$", r.out, re.M), r.out
        assert re.search(r"^\s+rpc-orgs\s+\d+\s+\d+\s+1$", r.out, re.M), r.out
        assert re.search(rf"^\s+{re.escape(BILLING_QUEUE)}\s+\d+\s+\d+\s+1$", r.out, re.M), r.out
        assert re.search(r"^\s+platformctl\.test\.dlq\s+1\s+0\s+0\s+DEAD LETTERS$", r.out, re.M), r.out
        for producer in PRODUCERS:
            assert re.search(rf"^\s+{producer}\s+position (\d+) of \1\s+lag 0$", r.out, re.M), r.out
        assert "problems: 1 dead letter(s) in platformctl.test.dlq" in r.out
    finally:
        channel.queue_delete("platformctl.test.dlq")
        conn.close()


def test_status_reports_a_process_down_with_exit_code_1(ctl: Callable[..., Result]) -> None:
    # Point the gateway check at a port nothing listens on.
    r = ctl("status", env={"PLATFORM_GATEWAY_PORT": str(free_port())})
    assert r.code == 1
    assert re.search(r"^\s+gateway\s+DOWN\s", r.out, re.M), r.out
    assert "problems: gateway down" in r.out


# -- events tail / list ---------------------------------------------------------------------


def test_tail_and_list_show_what_an_org_creation_stored(
        ctl: Callable[..., Result], rpc: Any, db: psycopg.Connection, user_token: dict[str, str]) -> None:
    org = new_org(rpc, db, user_token["user_id"], "Tail Me")
    org_id = str(Organization.create_id(slug=org["slug"]))
    user_id = user_token["user_id"]

    # The newest orgs events include the organization's creation (public) and the owner
    # joining it (private), saved together.
    r = ctl("events", "tail", "--service", "orgs", "-n", "5")
    assert r.code == 0, r.err
    rows = event_rows(r.out)
    assert len(rows) == 5 and all(row[0] == "orgs" for row in rows)
    positions = [int(row[1]) for row in rows]
    assert positions == sorted(positions)
    created = [row for row in rows if row[4] == org_id]
    assert len(created) == 1 and created[0][3] == "1" and created[0][5] == "organization_created"
    assert created[0][6].endswith(":Organization.Created)")
    joined = [row for row in rows if row[4] == user_id and "JoinedOrganization" in row[6]]
    assert joined and joined[-1][5] == "-"

    # Without --service the tail spans every producer's store, newest last.
    r = ctl("events", "tail", "-n", "3")
    assert r.code == 0 and any(row[4] == org_id for row in event_rows(r.out)), r.out

    # The org aggregate's whole history, and the user's, in version order.
    r = ctl("events", "list", "--aggregate", org_id)
    assert r.code == 0, r.err
    rows = event_rows(r.out)
    assert [(row[0], row[3], row[5]) for row in rows][:1] == [("orgs", "1", "organization_created")]
    r = ctl("events", "list", "--aggregate", user_id, "--service", "orgs")
    rows = event_rows(r.out)
    versions = [int(row[3]) for row in rows]
    assert versions == list(range(1, len(rows) + 1)) and len(rows) >= 2
    assert rows[0][5] == "user_signed_up"
    assert any("JoinedOrganization" in row[6] for row in rows)

    # An id nobody has is an error, not an empty success.
    r = ctl("events", "list", "--aggregate", str(uuid.uuid4()))
    assert r.code == 1 and "no stored events" in r.err


def test_tail_follow_through_the_console_script(settings: Settings, platform: Platform, rpc: Any,
                                                tmp_path: Path) -> None:
    out_path = tmp_path / "follow.out"
    env = {**child_env(settings), **settings_env(settings)}
    exe = Path(sys.executable).parent / "platformctl"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([str(exe), "events", "tail", "--service", "orgs", "-n", "0", "--follow"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("the tail header", lambda: "originator" in out_path.read_text())
        user = rpc.orgs.register_user(f"follow-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery")
        text = wait_for("the new user's event", lambda: (lambda t: user["id"] in t and t)(out_path.read_text()))
        assert re.search(rf"^orgs\s+\d+\s+\S+\s+1\s+{user['id']}\s+user_signed_up ", text, re.M), text
    finally:
        stop_process(proc)


# -- replay ---------------------------------------------------------------------------------


def test_replay_restores_a_lost_effect_in_one_consumer_only_and_changes_nothing_else(
        ctl: Callable[..., Result], rpc: Any, db: psycopg.Connection, settings: Settings,
        user_token: dict[str, str], observer: Callable[[str], Callable[[], int]]) -> None:
    org = new_org(rpc, db, user_token["user_id"], "Replay Target")
    lost = subscription(db, org["slug"])
    wait_for("the relay to catch up", lambda: settled(settings))
    # A second subscriber of orgs.events, bound to everything, from now on.
    second = observer("orgs")
    before = all_subscriptions(db)
    marks = db.execute("SELECT count(*) FROM billing.processed_messages").fetchone()[0]

    # Lose billing's effect for this org: the row and its processed mark, as if never applied.
    db.execute("DELETE FROM billing.subscriptions WHERE org_slug = %s", (org["slug"],))
    db.execute("DELETE FROM billing.processed_messages WHERE event_id = %s", (lost[3],))

    # Replay the whole orgs history to billing: only organization_created matches its binding.
    r = ctl("events", "replay", "--service", "orgs", "--from", "0", "--consumer", "billing")
    assert r.code == 0, r.err
    assert f"delivered {created_count(db)} message(s) from orgs positions 0..end to {BILLING_QUEUE}" in r.out

    # The lost row comes back identical (same event_id as the relay's), the rest unchanged.
    wait_for("the lost subscription to be restored", lambda: subscription(db, org["slug"]))
    wait_for("billing to drain the replay", lambda: int(broker_depth(settings, BILLING_QUEUE)) == 0)
    time.sleep(0.3)  # handlers of the last replayed messages may still be committing
    assert subscription(db, org["slug"]) == lost
    assert all_subscriptions(db) == before
    assert db.execute("SELECT count(*) FROM billing.processed_messages").fetchone()[0] == marks
    assert second() == 0

    # A one-position range to the handler named service.method delivers exactly that event.
    pos = store_position(db, Organization.create_id(slug=org["slug"]))
    r = ctl("events", "replay", "--service", "orgs", "--from", str(pos), "--to", str(pos),
            "--consumer", "billing.on_organization_created")
    assert r.code == 0 and f"delivered 1 message(s) from orgs positions {pos}..{pos} to {BILLING_QUEUE}" in r.out
    assert second() == 0


def broker_depth(settings: Settings, queue: str) -> int:
    conn = broker.connect(settings)
    try:
        return int(conn.channel().queue_declare(queue, passive=True).message_count)
    finally:
        conn.close()


def test_replaying_applied_probe_history_applies_nothing_twice(
        ctl: Callable[..., Result], db: psycopg.Connection, probe_consumer: None, probe_app: ProbeApplication,
        observer: Callable[[str], Callable[[], int]]) -> None:
    run_id = f"ctl-{uuid.uuid4().hex[:8]}"
    probe_app.record_batch(run_id, list(range(10)))
    wait_for("the probe effects", lambda: len(probe_effects(db, run_id)) == 10)
    second = observer("probe")

    r = ctl("events", "replay", "--service", "probe", "--from", "1", "--consumer", "probe.sink")
    assert r.code == 0, r.err
    delivered = int(re.search(r"delivered (\d+) message\(s\) from probe positions 1\.\.end to probe\.sink$",
                              r.out, re.M).group(1))  # type: ignore[union-attr]
    assert delivered >= 10

    # The consumer takes its queue in order: once a later live event is applied, the
    # replayed ones ahead of it have been handled.
    sentinel = f"ctl-{uuid.uuid4().hex[:8]}"
    probe_app.record_batch(sentinel, [0])
    wait_for("the sentinel", lambda: probe_effects(db, sentinel))
    assert probe_effects(db, run_id) == [(s, 1) for s in range(10)]
    # Only the live sentinel reached the second subscriber, not the replay.
    assert second() == 1


# -- projections ----------------------------------------------------------------------------


def test_rebuild_billing_subscriptions_restores_the_read_model(
        ctl: Callable[..., Result], rpc: Any, db: psycopg.Connection, settings: Settings,
        user_token: dict[str, str]) -> None:
    a = new_org(rpc, db, user_token["user_id"], "Rebuild A")
    new_org(rpc, db, user_token["user_id"], "Rebuild B")
    before = all_subscriptions(db)
    # Damage the read model: a row gone (mark and all), another row wrong.
    gone = subscription(db, a["slug"])
    db.execute("DELETE FROM billing.subscriptions WHERE org_slug = %s", (a["slug"],))
    db.execute("DELETE FROM billing.processed_messages WHERE event_id = %s", (gone[3],))
    db.execute("UPDATE billing.subscriptions SET plan = 'bogus'")

    r = ctl("projections", "rebuild", "billing.subscriptions")
    assert r.code == 0, r.err
    assert "reset billing.subscriptions" in r.out
    assert f"delivered {created_count(db)} message(s) from orgs positions 1..end to {BILLING_QUEUE}" in r.out
    wait_for("the rebuilt read model", lambda: all_subscriptions(db) == before)


def test_rebuild_project_views_restores_lists_from_the_store(
        ctl: Callable[..., Result], rpc: Any, db: psycopg.Connection, user_token: dict[str, str]) -> None:
    slug = new_org(rpc, db, user_token["user_id"], "Views")["slug"]
    ref = rpc.projects.create_project(user_token["user_id"], {"name": "Viewed", "organization_slug": slug,
                                                               "db_pass": "Tenant-Pass-123"})["ref"]
    listed = rpc.projects.list_projects(user_token["user_id"], [slug])
    assert [p["ref"] for p in listed] == [ref]
    # Damage the read model: the row gone, then the list is empty.
    db.execute("DELETE FROM projects.project_views WHERE ref = %s", (ref,))
    assert rpc.projects.list_projects(user_token["user_id"], [slug]) == []

    r = ctl("projections", "rebuild", "projects.project_views")
    assert r.code == 0, r.err
    assert "rebuilt projects.project_views from projects's store" in r.out
    again = rpc.projects.list_projects(user_token["user_id"], [slug])
    assert [p["ref"] for p in again] == [ref] and again[0]["name"] == "Viewed"


def test_rebuild_orgs_views_restores_authentication_and_lists_from_the_store(
        ctl: Callable[..., Result], rpc: Any, db: psycopg.Connection, user_token: dict[str, str]) -> None:
    slug = new_org(rpc, db, user_token["user_id"], "Org Views")["slug"]
    before = rpc.orgs.list_organizations(user_token["user_id"])
    assert [o["slug"] for o in before] == [slug] and before[0]["role"] == "owner"
    # Damage the read model: the organization's row gone, the user's wrong.
    db.execute("DELETE FROM orgs.org_views WHERE slug = %s", (slug,))
    db.execute("UPDATE orgs.user_views SET view = jsonb_set(view, '{display_name}', '\"bogus\"') "
               "WHERE user_id = %s", (user_token["user_id"],))
    assert rpc.orgs.list_organizations(user_token["user_id"]) == []

    r = ctl("projections", "rebuild", "orgs.views")
    assert r.code == 0, r.err
    assert "rebuilt orgs.views from orgs's store" in r.out
    assert rpc.orgs.list_organizations(user_token["user_id"]) == before
    me = rpc.orgs.authenticate_token(user_token["token"])
    assert me["id"] == user_token["user_id"] and me["organizations"] == [slug] and me["display_name"] != "bogus"


def test_rebuild_probe_sink_restores_its_effects(
        ctl: Callable[..., Result], db: psycopg.Connection, probe_consumer: None,
        probe_app: ProbeApplication) -> None:
    run_id = f"ctl-{uuid.uuid4().hex[:8]}"
    probe_app.record_batch(run_id, list(range(20)))
    wait_for("the probe effects", lambda: len(probe_effects(db, run_id)) == 20)
    db.execute("DELETE FROM probe.probe_effects WHERE run_id = %s AND seq < 5", (run_id,))
    db.execute("UPDATE probe.probe_effects SET applied = 9 WHERE run_id = %s", (run_id,))

    r = ctl("projections", "rebuild", "probe.sink")
    assert r.code == 0, r.err
    assert "reset probe.sink" in r.out and re.search(r"delivered \d+ message\(s\) .* to probe\.sink$", r.out, re.M)
    wait_for("the rebuilt effects", lambda: probe_effects(db, run_id) == [(s, 1) for s in range(20)])

    r = ctl("projections", "list")
    assert r.code == 0 and "billing.subscriptions" in r.out and "probe.sink" in r.out and "orgs.views" in r.out


# -- users and tokens -----------------------------------------------------------------------


def test_users_and_tokens_bootstrap_a_working_personal_access_token(
        ctl: Callable[..., Result], db: psycopg.Connection, http: Any) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    r = ctl("users", "create", "--email", email, "--password", "correct horse battery")
    assert r.code == 0, r.err
    assert re.fullmatch(rf"created user [0-9a-f-]{{36}} {re.escape(email)}\n", r.out)

    r = ctl("users", "create", "--email", email, "--password", "correct horse battery")
    assert r.code == 1 and email in r.err  # a conflict, named

    r = ctl("tokens", "create", "--email", email, "--name", "ci")
    assert r.code == 0, r.err
    token = r.out.strip()
    assert re.fullmatch(r"sbp_[0-9a-f]{40}", token)

    # It works against the Management API...
    created = http.post("/v1/organizations", token=token, json={"name": "Made With CLI Token"})
    assert created.status_code == 201, created.text
    # ...and the store never saw it in the clear.
    leaks = db.execute("SELECT count(*) FROM orgs.orgs_events WHERE position(%s::bytea in state) > 0",
                       (token[4:].encode(),)).fetchone()[0]
    assert leaks == 0


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "required: COMMAND"),
        (["events"], "required: SUBCOMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["events", "tail", "--service", "nosuchservice"], "invalid choice: 'nosuchservice'"),
        (["events", "replay", "--service", "orgs", "--from", "x", "--consumer", "billing"], "must be an integer >= 0"),
        (["events", "tail", "-n", "-1"], "must be an integer >= 0"),
        (["events", "replay", "--service", "orgs", "--from", "5", "--to", "2", "--consumer", "billing"],
         "--to 2 is before --from 5"),
        (["events", "replay", "--service", "orgs", "--from", "1"], "--consumer"),
        (["events", "replay", "--service", "orgs", "--from", "1", "--consumer", "nobody"],
         "no queue of consumer 'nobody' is bound to orgs.events"),
        (["events", "list", "--aggregate", "not-a-uuid"], "must be an aggregate id"),
        (["projections", "rebuild", "nope"], "unknown projection 'nope'; rebuildable: billing.subscriptions"),
        (["tokens", "create"], "--email"),
        (["tokens", "create", "--email", "nobody-here@example.com"], "no user with email"),
        (["users", "create", "--email", "x@example.com", "--password", "short"], "password"),
        (["users", "create", "--email", "not an email", "--password", "long enough pw"], "email"),
    ],
)
def test_bad_arguments_give_a_clear_message_and_exit_1(ctl: Callable[..., Result], argv: list[str],
                                                       message: str) -> None:
    r = ctl(*argv)
    assert r.code == 1
    assert message in r.err, r.err
    assert "Traceback" not in r.err


def test_mail_list_shows_the_invitation_an_owner_sent(ctl: Callable[..., Result], http: Any) -> None:
    owner = f"mail-owner-{uuid.uuid4().hex[:8]}@example.com"
    invitee = f"mail-invitee-{uuid.uuid4().hex[:8]}@example.com"
    assert ctl("users", "create", "--email", owner, "--password", "correct horse battery").code == 0
    token = ctl("tokens", "create", "--email", owner).out.strip()
    slug = http.post("/v1/organizations", token=token, json={"name": "Mail Org"}).json()["slug"]
    r = http.post(f"/platform/organizations/{slug}/invitations", token=token, json={"email": invitee, "role": "admin"})
    assert r.status_code == 201, r.text
    listed = ctl("mail", "list", "--to", invitee, "--body")
    assert listed.code == 0, listed.err
    assert "You're invited to join Mail Org" in listed.out and "invitations/accept?token=" in listed.out
    assert ctl("mail", "list", "--to", f"nobody-{uuid.uuid4().hex}@example.com").out == ""
