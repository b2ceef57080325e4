"""realtime settings scenarios on the in-memory store and on PostgreSQL, with fake projects,
orgs and billing ports: defaults, changes recorded with who changed what, bad input and plan
ceilings refused without changing anything, shutdowns, the read model and its NOTIFY (one
per committed change, in the change's own transaction), and the contract messages.
(The HTTP API runs end to end in tests/integration/test_realtime_config.py.)"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import psycopg
import pytest

from services.realtime.bootstrap import build
from services.realtime.config import BOUNDS, DEFAULT
from services.realtime.config_views import CHANNEL
from services.realtime.outbox import to_message
from services.shared.db import bootstrap, drop_database
from services.shared.errors import Forbidden, InvalidInput, LimitExceeded, NotFound
from tests.conftest import make_test_settings

FREE = {"plan": "free", "realtime": {"max_concurrent_users": 200, "max_events_per_second": 100,
                                     "max_bytes_per_second": 100000, "max_channels_per_client": 100,
                                     "max_joins_per_second": 100, "max_presence_events_per_second": 100,
                                     "max_payload_size_in_kb": 256}}
PRO = {"plan": "pro", "realtime": {**FREE["realtime"], "max_concurrent_users": 500}}


class FakeProjects:
    def __init__(self) -> None:
        self.members: dict[tuple[str, str], str] = {}
        self.status = "ACTIVE_HEALTHY"

    def get_project(self, user_id: str, ref: str) -> dict[str, Any]:
        if (user_id, ref) not in self.members:
            raise NotFound(f"project {ref} not found")
        return {"ref": ref, "organization_slug": "acme", "status": self.status}


class FakeOrgs:
    def __init__(self, projects: FakeProjects) -> None:
        self.projects = projects

    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
        role = next((r for (u, _), r in self.projects.members.items() if u == user_id), None)
        if action == "projects.manage" and role not in ("owner", "admin"):
            raise Forbidden(f"your role ({role}) does not allow this")
        return {"slug": slug, "role": role}


class FakeBilling:
    def __init__(self) -> None:
        self.entitlements = FREE

    def get_entitlements(self, org_slug: str) -> dict[str, Any]:
        return self.entitlements


@pytest.fixture(scope="module")
def pg_settings() -> Iterator[Any]:
    s = make_test_settings("rtc")
    bootstrap(s)
    yield s
    drop_database(s)


@pytest.fixture(params=["memory", "postgres"])
def w(request: Any, pg_settings: Any) -> Iterator[dict[str, Any]]:
    app = build(pg_settings, in_memory=request.param == "memory")
    projects = FakeProjects()
    owner, member, reader = (str(uuid.uuid4()) for _ in range(3))
    ref = "".join(chr(97 + (b % 26)) for b in uuid.uuid4().bytes[:20])
    projects.members.update({(owner, ref): "owner", (member, ref): "member", (reader, ref): "read_only"})
    yield {"app": app, "p": projects, "o": FakeOrgs(projects), "b": FakeBilling(), "owner": owner, "member": member,
           "reader": reader, "ref": ref, "settings": pg_settings}
    app.close()


def patch(w: dict[str, Any], body: Any, who: str = "owner") -> dict[str, Any]:
    result: dict[str, Any] = w["app"].update_realtime_config(w[who], w["ref"], body, w["p"], w["o"], w["b"],
                                                             {"actor": w[who], "correlation_id": "c1"})
    return result


def messages(app: Any) -> list[Any]:
    return [m for n in app.recorder.select_notifications(1, 100)
            if (m := to_message(app.mapper.to_domain_event(n))) is not None]


def test_defaults_then_changes_are_recorded_with_who_changed_what(w: dict[str, Any]) -> None:
    app, ref = w["app"], w["ref"]
    # Never changed: Supabase's defaults, every field of RealtimeConfigResponse.
    assert app.get_realtime_config(w["reader"], ref, w["p"]) == DEFAULT.as_dict()
    out = patch(w, {"max_concurrent_users": 10, "private_only": True, "presence_enabled": True})
    # Only what differs is a change (presence_enabled was already true).
    assert out["changed"] == {"max_concurrent_users": [200, 10], "private_only": [False, True]}
    got = app.get_realtime_config(w["member"], ref, w["p"])
    assert got == {**DEFAULT.as_dict(), "max_concurrent_users": 10, "private_only": True}
    # The same PATCH again changes nothing and records nothing.
    before = app.recorder.max_notification_id()
    assert patch(w, {"max_concurrent_users": 10})["changed"] == {}
    assert app.recorder.max_notification_id() == before
    # The contract message names the fields, their previous values and who changed them.
    msgs = [m for m in messages(app) if m.event_type == "realtime_config_changed"]
    assert len(msgs) == 1 and msgs[0].payload["changes"] == {"max_concurrent_users": 10, "private_only": True}
    assert msgs[0].payload["previous"] == {"max_concurrent_users": 200, "private_only": False}
    assert msgs[0].payload["changed_by"] == w["owner"] and msgs[0].project_ref == ref
    assert msgs[0].correlation_id == "c1"


@pytest.mark.parametrize("body,message", [
    ({"max_concurrent_users": 0}, "max_concurrent_users: an integer from 1 to 50000"),
    ({"max_concurrent_users": "10"}, "max_concurrent_users: an integer from 1 to 50000"),
    ({"max_events_per_second": True}, "max_events_per_second: an integer"),
    ({"private_only": "yes"}, "private_only: true or false"),
    ({"max_everything": 1}, "max_everything: unknown realtime setting"),
    ([1, 2], "a JSON object"),
])
def test_bad_input_is_refused_and_changes_nothing(w: dict[str, Any], body: Any, message: str) -> None:
    patch(w, {"max_concurrent_users": 50})
    with pytest.raises(InvalidInput, match=message):
        patch(w, {"connection_pool": 3, **body} if isinstance(body, dict) else body)
    # The valid field beside the bad one was not applied either.
    assert w["app"].get_realtime_config(w["owner"], w["ref"], w["p"])["connection_pool"] == DEFAULT.connection_pool


def test_plan_ceilings_refuse_more_and_an_upgrade_allows_it(w: dict[str, Any]) -> None:
    with pytest.raises(LimitExceeded, match="max_concurrent_users: the free plan allows at most 200"):
        patch(w, {"max_concurrent_users": 201, "connection_pool": 5})
    assert w["app"].get_realtime_config(w["owner"], w["ref"], w["p"]) == DEFAULT.as_dict()
    w["b"].entitlements = PRO
    assert patch(w, {"max_concurrent_users": 500})["settings"]["max_concurrent_users"] == 500
    page = w["app"].realtime_settings_page(w["owner"], w["ref"], w["p"], w["o"], w["b"])
    assert page["ceilings"]["max_concurrent_users"] == 500 and page["plan"] == "pro" and page["can_change"]
    # A ceiling the plan leaves open (null) is the API's own maximum.
    assert page["ceilings"]["max_concurrent_users"] <= BOUNDS["max_concurrent_users"][1]
    assert w["app"].realtime_settings_page(w["reader"], w["ref"], w["p"], w["o"], w["b"])["can_change"] is False


def test_roles_and_membership(w: dict[str, Any]) -> None:
    for who in ("member", "reader"):
        with pytest.raises(Forbidden):
            patch(w, {"max_concurrent_users": 5}, who=who)
        with pytest.raises(Forbidden):
            w["app"].shutdown_realtime(w[who], w["ref"], w["p"], w["o"], w["b"])
    with pytest.raises(NotFound):
        w["app"].get_realtime_config(str(uuid.uuid4()), w["ref"], w["p"])
    assert w["app"].get_realtime_config(w["owner"], w["ref"], w["p"]) == DEFAULT.as_dict()


def test_shutdown_is_an_event_counted_in_the_read_model(w: dict[str, Any]) -> None:
    app, ref = w["app"], w["ref"]
    assert app.shutdown_realtime(w["owner"], ref, w["p"], w["o"], w["b"], {"actor": w["owner"]})["shutdowns"] == 1
    assert app.shutdown_realtime(w["owner"], ref, w["p"], w["o"], w["b"], {"actor": w["owner"]})["shutdowns"] == 2
    row = app.config_row(ref)
    assert row["shutdowns"] == 2 and row["settings"] == DEFAULT.as_dict()
    shut = [m for m in messages(app) if m.event_type == "realtime_shutdown_requested"]
    assert [m.payload["seq"] for m in shut] == [1, 2] and shut[0].payload["requested_by"] == w["owner"]
    # A paused project has no realtime tenant: the spec's 404.
    w["p"].status = "INACTIVE"
    with pytest.raises(NotFound, match="Tenant not found"):
        app.shutdown_realtime(w["owner"], ref, w["p"], w["o"], w["b"])


@pytest.fixture
def pg_w(pg_settings: Any) -> Iterator[dict[str, Any]]:
    """LISTEN/NOTIFY is PostgreSQL's: this scenario runs there only."""
    app = build(pg_settings)
    projects = FakeProjects()
    owner = str(uuid.uuid4())
    ref = "".join(chr(97 + (b % 26)) for b in uuid.uuid4().bytes[:20])
    projects.members[(owner, ref)] = "owner"
    yield {"app": app, "p": projects, "o": FakeOrgs(projects), "b": FakeBilling(), "owner": owner, "ref": ref,
           "settings": pg_settings}
    app.close()


def test_each_committed_change_notifies_the_server_channel(pg_w: dict[str, Any]) -> None:
    w = pg_w
    listener = psycopg.connect(w["settings"].db_conninfo, autocommit=True)
    try:
        listener.execute(f"LISTEN {CHANNEL}")
        patch(w, {"max_concurrent_users": 7})
        with pytest.raises(InvalidInput):
            patch(w, {"max_concurrent_users": -1})  # refused: no notice
        w["app"].shutdown_realtime(w["owner"], w["ref"], w["p"], w["o"], w["b"])
        got = []
        for n in listener.notifies(timeout=10, stop_after=2):
            got.append(json.loads(n.payload))
        assert [(g["ref"], g["shutdowns"]) for g in got] == [(w["ref"], 0), (w["ref"], 1)]
        assert got[0]["version"] < got[1]["version"]
    finally:
        listener.close()
