"""projects application scenarios on the in-memory store and on PostgreSQL, with fake orgs,
billing and provisioner ports (the real ones are exercised end to end elsewhere)."""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from typing import Any, Iterator

import jwt
import pytest

from services.projects import keys
from services.projects.application import ProjectsApplication
from services.projects.bootstrap import build
from services.shared.db import bootstrap, drop_database
from services.shared.errors import Conflict, Forbidden, InvalidInput, LimitExceeded, NotFound
from tests.conftest import make_test_settings
from tests.support import FakeOrgs


class FakeBilling:
    def __init__(self) -> None:
        self.plan: dict[str, str] = {}

    def get_entitlements(self, org_slug: str) -> dict[str, Any]:
        plan = self.plan.get(org_slug, "free")
        return {"plan": plan, "max_projects": 2 if plan == "free" else None}


class FakeProvisioner:
    def check_tenant(self, ref: str) -> dict[str, Any]:
        return {"db": {"healthy": True}, "storage": {"healthy": False, "error": "bucket missing"}}


@pytest.fixture(scope="module")
def pg_settings() -> Iterator[Any]:
    s = make_test_settings("proj")
    bootstrap(s)
    yield s
    drop_database(s)


@pytest.fixture(params=["memory", "postgres"])
def world(request: Any, pg_settings: Any) -> Iterator[dict[str, Any]]:
    app = build(pg_settings, in_memory=request.param == "memory")
    orgs, billing = FakeOrgs(), FakeBilling()
    owner, member = str(uuid.uuid4()), str(uuid.uuid4())
    slug = "org-" + uuid.uuid4().hex[:8]
    orgs.roles[(owner, slug)] = "owner"
    orgs.roles[(member, slug)] = "member"
    yield {"app": app, "orgs": orgs, "billing": billing, "owner": owner, "member": member, "slug": slug}
    app.close()


def create(w: dict[str, Any], **body: Any) -> dict[str, Any]:
    b = {"name": "My App", "organization_slug": w["slug"], "db_pass": "tenant-password-1", "region": "eu-west-1", **body}
    return w["app"].create_project(w["owner"], b, w["orgs"], w["billing"], body.pop("key", None))


def outcome(app: ProjectsApplication, ref: str, kind: str, **payload: Any) -> bool:
    project = app._project(ref)
    env = {"event_id": str(uuid.uuid4()), "payload": {"ref": ref, "operation_id": project.operation_id, **payload}}
    if kind == "step":
        return app.apply_progress(env)
    if kind == "failed":
        return app.apply_failure(env)
    return app.apply_completion(env, kind)


CONN = {"db_host": "127.0.0.1", "db_port": 5432, "db_name": "x", "db_user": "postgres.x", "bucket": "sp-x"}


def test_create_returns_coming_up_with_a_real_ref_and_keys(world: dict[str, Any]) -> None:
    app = world["app"]
    p = create(world)
    assert p["status"] == "COMING_UP" and len(p["ref"]) == 20 and p["ref"].isalpha() and p["ref"].islower()
    keys_ = {k["name"]: k["api_key"] for k in app.api_keys(world["owner"], p["ref"], world["orgs"])}
    secret = app.get_tenant_credentials(p["ref"])["jwt_secret"]
    claims = keys.verify(keys_["anon"], secret)
    assert claims["role"] == "anon" and claims["ref"] == p["ref"] and claims["iss"] == "supabase"
    assert keys.verify(keys_["service_role"], secret)["role"] == "service_role"
    # Members see the anon key only.
    assert [k["name"] for k in app.api_keys(world["member"], p["ref"], world["orgs"])] == ["anon"]
    # Secrets are encrypted at rest: neither the password nor the JWT secret is in any stored event.
    stored = repr([app.recorder.select_events(e.originator_id) for e in
                   app.recorder.select_notifications(start=1, limit=100)])
    assert "tenant-password-1" not in stored and secret not in stored


def test_progress_completion_and_idempotent_outcomes(world: dict[str, Any]) -> None:
    app = world["app"]
    ref = create(world)["ref"]
    assert outcome(app, ref, "step", step="create_database", step_index=2, total_steps=5)
    detail = app.get_project(world["owner"], ref, world["orgs"])
    assert detail["progress"]["step"] == "create_database" and detail["progress"]["step_index"] == 2
    project = app._project(ref)
    env = {"event_id": str(uuid.uuid4()), "payload": {"ref": ref, "operation_id": project.operation_id, "connection": CONN}}
    assert app.apply_completion(env, "create")
    assert not app.apply_completion(env, "create")  # redelivery changes nothing
    assert app.get_project(world["owner"], ref, world["orgs"])["status"] == "ACTIVE_HEALTHY"
    # A stale progress report after completion is ignored.
    assert not outcome(app, ref, "step", step="late", step_index=1, total_steps=5)


def test_pause_restore_delete_and_failures(world: dict[str, Any]) -> None:
    app, orgs, owner = world["app"], world["orgs"], world["owner"]
    ref = create(world)["ref"]
    with pytest.raises(Conflict):
        app.pause_project(owner, ref, orgs)  # still COMING_UP
    outcome(app, ref, "create", connection=CONN)
    with pytest.raises(Forbidden):
        app.pause_project(world["member"], ref, orgs)
    assert app.pause_project(owner, ref, orgs)["status"] == "PAUSING"
    outcome(app, ref, "failed", operation="pause", step="dump", reason="disk full")
    detail = app.get_project(owner, ref, orgs)
    assert detail["status"] == "PAUSE_FAILED" and detail["progress"]["reason"] == "disk full"
    app.pause_project(owner, ref, orgs)  # retry allowed
    outcome(app, ref, "pause", backup_bytes=10)
    assert app.get_project(owner, ref, orgs)["status"] == "INACTIVE"
    assert app.restore_project(owner, ref, orgs, world["billing"])["status"] == "RESTORING"
    outcome(app, ref, "restore", connection=CONN)
    assert app.delete_project(owner, ref, orgs)["status"] == "GOING_DOWN"
    outcome(app, ref, "delete")
    assert app.get_project(owner, ref, orgs)["status"] == "REMOVED"
    assert all(p["ref"] != ref for p in app.list_projects(owner, orgs))
    with pytest.raises(NotFound):
        app.get_tenant_credentials(ref)  # secrets forgotten with the tenant


def test_free_plan_limit_counts_active_projects(world: dict[str, Any]) -> None:
    app, orgs, owner, billing = world["app"], world["orgs"], world["owner"], world["billing"]
    a, b = create(world)["ref"], create(world)["ref"]
    with pytest.raises(LimitExceeded, match="free plan allows at most 2 active projects"):
        create(world)
    outcome(app, a, "create", connection=CONN)
    app.pause_project(owner, a, orgs)
    outcome(app, a, "pause", backup_bytes=0)
    c = create(world)["ref"]  # a paused project frees its slot
    with pytest.raises(LimitExceeded):
        app.restore_project(owner, a, orgs, billing)  # ...and restoring needs one again
    billing.plan[world["slug"]] = "pro"
    create(world)
    assert app.count_projects(world["slug"]) == 4 and {a, b, c} <= {p["ref"] for p in app.list_projects(owner, orgs)}


def test_idempotency_key(world: dict[str, Any]) -> None:
    app = world["app"]
    body = {"name": "Once", "organization_slug": world["slug"], "db_pass": "tenant-password-1", "region": "us-east-1"}
    first = app.create_project(world["owner"], body, world["orgs"], world["billing"], "key-1")
    again = app.create_project(world["owner"], body, world["orgs"], world["billing"], "key-1")
    assert first["ref"] == again["ref"] and app.count_projects(world["slug"]) == 1
    with pytest.raises(Conflict, match="different request"):
        app.create_project(world["owner"], {**body, "name": "Other"}, world["orgs"], world["billing"], "key-1")
    assert app.count_projects(world["slug"]) == 1


@pytest.mark.parametrize("body, field", [
    ({"organization_slug": "nope-not-mine"}, "NotFound"),
    ({"region": "mars-north-1"}, "region"),
    ({"db_pass": "short"}, "db_pass"),
    ({"name": ""}, "name"),
    ({"region_selection": {"type": "smartGroup", "code": "moon"}, "region": None}, "region_selection"),
])
def test_bad_create_input_creates_nothing(world: dict[str, Any], body: dict[str, Any], field: str) -> None:
    app = world["app"]
    with pytest.raises((InvalidInput, NotFound)) as err:
        create(world, **body)
    assert field in (str(err.value) + type(err.value).__name__)
    assert app.count_projects(world["slug"]) == 0


def test_credentials_rotation_and_settings_history(world: dict[str, Any]) -> None:
    app, orgs, owner = world["app"], world["orgs"], world["owner"]
    ref = create(world)["ref"]
    old_secret = app.get_tenant_credentials(ref)["jwt_secret"]
    old_anon = app.api_keys(owner, ref, orgs)[0]["api_key"]
    with pytest.raises(Forbidden):
        app.rotate_jwt_secret(world["member"], ref, orgs)
    new = {k["name"]: k["api_key"] for k in app.rotate_jwt_secret(owner, ref, orgs)}
    new_secret = app.get_tenant_credentials(ref)["jwt_secret"]
    assert new_secret != old_secret
    with pytest.raises(jwt.InvalidSignatureError):
        keys.verify(old_anon, new_secret)
    assert keys.verify(new["anon"], new_secret)["role"] == "anon"
    app.update_postgrest(owner, ref, {"max_rows": 500}, orgs)
    app.update_auth_config(owner, ref, {"site_url": "https://app.example.com", "jwt_exp": 7200}, orgs)
    for bad in [{"max_rows": -1}, {"max_rows": "many"}, {"nope": 1}]:
        with pytest.raises(InvalidInput):
            app.update_postgrest(owner, ref, bad, orgs)
    for bad in [{"jwt_exp": 10**9}, {"disable_signup": "yes"}, {"made_up_field": True}]:
        with pytest.raises(InvalidInput):
            app.update_auth_config(owner, ref, bad, orgs)
    auth = app.get_auth_config(owner, ref, orgs)
    assert auth["site_url"] == "https://app.example.com" and auth["jwt_exp"] == 7200 and len(auth) > 200
    history = app.settings_history(owner, ref, orgs)
    assert [h["setting"] for h in history] == ["auth", "postgrest", "jwt_secret"]
    assert history[1]["changes"] == {"max_rows": 500}


def test_strangers_see_nothing(world: dict[str, Any]) -> None:
    app, orgs = world["app"], world["orgs"]
    ref = create(world)["ref"]
    stranger = str(uuid.uuid4())
    for call in (lambda: app.get_project(stranger, ref, orgs), lambda: app.api_keys(stranger, ref, orgs),
                 lambda: app.pause_project(stranger, ref, orgs), lambda: app.delete_project(stranger, ref, orgs),
                 lambda: app.get_auth_config(stranger, ref, orgs)):
        with pytest.raises(NotFound, match=f"project {ref} not found"):
            call()
    assert app.list_projects(stranger, orgs) == []


def test_metering_sees_active_projects_and_their_organizations(world: dict[str, Any]) -> None:
    app, owner = world["app"], world["owner"]
    world["billing"].plan[world["slug"]] = "pro"
    active, paused = create(world)["ref"], create(world)["ref"]
    for ref in (active, paused):
        outcome(app, ref, "create", connection=CONN)
    app.pause_project(owner, paused, world["orgs"])
    outcome(app, paused, "pause", backup_bytes=10)
    mine = {p["ref"]: p for p in app.list_active_projects() if p["ref"] in (active, paused)}
    assert mine == {active: {"ref": active, "org_slug": world["slug"], "status": "ACTIVE_HEALTHY"}}
    assert app.project_org(paused) == world["slug"]
    with pytest.raises(NotFound):
        app.project_org("nosuchprojectrefhere")


def test_creates_for_one_org_at_once_are_saved_together_within_the_plan_limit(world: dict[str, Any]) -> None:
    """Creates queued for one organization are added by whoever's turn it is, in one save:
    none is lost to a sibling's save, and the plan limit holds across the batch."""
    app, slug = world["app"], world["slug"]
    saves: list[int] = []
    real_save = app.save

    def counting_save(*objs: Any, **kw: Any) -> Any:
        saves.append(len(objs))
        return real_save(*objs, **kw)

    app.save = counting_save
    made: list[dict[str, Any]] = []
    refused: list[Exception] = []

    def one(i: int) -> None:
        try:
            made.append(create(world, name=f"App {i}"))
        except LimitExceeded as exc:
            refused.append(exc)

    turn = app._org_locks[zlib.crc32(slug.encode()) % len(app._org_locks)]
    with turn:  # all five queue up behind the organization's turn
        threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(app._org_queues.get(slug, [])) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    assert len(made) == 2 and len(refused) == 3  # free plan: two active projects
    assert saves == [3]  # both projects and the organization's list, in one save
    assert sorted(app._org_projects(slug).refs) == sorted(p["ref"] for p in made)
    assert all(app.get_project(world["owner"], p["ref"], world["orgs"])["status"] == "COMING_UP" for p in made)


def test_stale_progress_is_skipped_without_changing_anything(world: dict[str, Any]) -> None:
    app = world["app"]
    ref = create(world)["ref"]
    assert outcome(app, ref, "step", step="create_database", step_index=3, total_steps=6)
    version = app._project(ref).version
    assert not outcome(app, ref, "step", step="create_roles", step_index=2, total_steps=6)
    assert outcome(app, ref, "step", step="configure_database", step_index=4, total_steps=6)
    assert outcome(app, ref, "create", connection=CONN)
    assert not outcome(app, ref, "step", step="check_health", step_index=6, total_steps=6)
    assert app._project(ref).version == version + 2
    detail = app.get_project(world["owner"], ref, world["orgs"])
    assert detail["status"] == "ACTIVE_HEALTHY" and detail["progress"]["step"] is None



def test_reads_come_from_the_read_model_kept_with_every_save(world: dict[str, Any]) -> None:
    app, orgs, owner = world["app"], world["orgs"], world["owner"]
    a, b = create(world)["ref"], create(world, name="Second")["ref"]
    slugs = [world["slug"]]
    # Lists: one query on the read model, the caller's organizations as the gateway knows them.
    listed = app.list_projects(owner, orgs, slugs)
    assert [p["ref"] for p in listed] == [a, b]
    assert listed == app.list_projects(owner, orgs)  # the same as when orgs is asked
    assert json.loads(app.list_projects_json(slugs)) == listed
    assert app.list_projects(owner, orgs, ["someone-elses"]) == []
    # A read of one project: members' organizations only, whatever the ref.
    assert app.get_project(owner, a, orgs, slugs) == app.get_project(owner, a, orgs)
    with pytest.raises(NotFound):
        app.get_project(owner, a, orgs, ["someone-elses"])
    with pytest.raises(NotFound):
        app.get_project(owner, "x" * 20, orgs, slugs)
    # Every change is in the read model at once (the same transaction on PostgreSQL).
    for ref in (a, b):
        app.apply_completion({"event_id": str(uuid.uuid4()), "payload": {
            "ref": ref, "operation_id": app._project(ref).operation_id,
            "connection": {"db_host": "h", "db_port": 5432, "db_name": ref, "db_user": "u", "bucket": "b"}}}, "create")
    assert app.get_project(owner, a, orgs, slugs)["status"] == "ACTIVE_HEALTHY"
    assert app.get_project(owner, a, orgs, slugs)["connection"]["db_host"] == "h"
    app.delete_project(owner, b, orgs)
    assert [p["status"] for p in app.list_projects(owner, orgs, slugs)] == ["ACTIVE_HEALTHY", "GOING_DOWN"]
    # Rebuilt from the events, it holds the same.
    before = app.list_projects(owner, orgs, slugs)
    app.views.clear()
    assert app.list_projects(owner, orgs, slugs) == []
    assert app.rebuild_views() >= 2
    assert app.list_projects(owner, orgs, slugs) == before
