"""functions application scenarios on the in-memory store and on PostgreSQL, with fake
projects and orgs ports: deploys and versions, rollback, bulk activation, secrets at rest,
logs filters, tenant facts, bundle checks. (The runtime and the HTTP API run end to end in
tests/integration/test_functions.py.)"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest

from services.functions import bundles as B
from services.functions.application import FunctionsApplication
from services.functions.bootstrap import build
from services.shared.db import bootstrap, drop_database
from services.shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from tests.conftest import make_test_settings

SRC = b"Deno.serve(() => new Response('hi'))"


class FakeProjects:
    def __init__(self) -> None:
        self.members: dict[tuple[str, str], str] = {}  # (user, ref) -> role
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
        if action != "projects.read" and role == "member":
            raise Forbidden("your role (member) does not allow this")
        return {"slug": slug, "role": role}


@pytest.fixture(scope="module")
def pg_settings() -> Iterator[Any]:
    s = make_test_settings("fn")
    bootstrap(s)
    yield s
    drop_database(s)


@pytest.fixture(params=["memory", "postgres"])
def w(request: Any, pg_settings: Any) -> Iterator[dict[str, Any]]:
    app = build(pg_settings, in_memory=request.param == "memory")
    projects = FakeProjects()
    owner, member = str(uuid.uuid4()), str(uuid.uuid4())
    ref = "".join(chr(97 + (b % 26)) for b in uuid.uuid4().bytes[:20])
    projects.members[(owner, ref)] = "owner"
    projects.members[(member, ref)] = "member"
    yield {"app": app, "p": projects, "o": FakeOrgs(projects), "owner": owner, "member": member, "ref": ref}
    app.close()


def deploy(w: dict[str, Any], slug: str = "hello", src: bytes = SRC, **meta: Any) -> dict[str, Any]:
    app: FunctionsApplication = w["app"]
    return app.deploy_function(w["owner"], w["ref"], slug, {"entrypoint_path": "index.ts", **meta},
                               [("index.ts", src)], meta.pop("bundle_only", False), w["p"], w["o"])


def test_deploys_make_versions_and_rollback_activates_an_earlier_one(w: dict[str, Any]) -> None:
    app, ref = w["app"], w["ref"]
    v1 = deploy(w)
    assert (v1["version"], v1["status"], v1["verify_jwt"], v1["name"]) == (1, "ACTIVE", True, "hello")
    v2 = deploy(w, src=b"Deno.serve(() => new Response('v2'))", name="Hello", verify_jwt=False)
    assert (v2["version"], v2["name"], v2["verify_jwt"]) == (2, "Hello", False)
    assert v2["created_at"] == v1["created_at"] and v2["updated_at"] >= v1["updated_at"]
    assert app.invocation_target(ref, "hello")["version"] == 2
    back = app.rollback_function(w["owner"], ref, "hello", None, w["p"], w["o"])
    assert back["version"] == 1 and app.invocation_target(ref, "hello")["bundle_sha256"] == v1["ezbr_sha256"]
    with pytest.raises(Conflict, match="version 9 does not exist"):
        app.rollback_function(w["owner"], ref, "hello", 9, w["p"], w["o"])
    assert [v["active"] for v in app.list_versions(w["owner"], ref, "hello", w["p"])] == [False, True]
    # A member may read but not deploy.
    assert app.get_function(w["member"], ref, "hello", w["p"])["version"] == 1
    with pytest.raises(Forbidden):
        deploy({**w, "owner": w["member"]})
    # Outsiders see nothing.
    with pytest.raises(NotFound):
        app.list_functions(str(uuid.uuid4()), ref, w["p"])


def test_bundle_only_then_bulk_update_makes_versions_live(w: dict[str, Any]) -> None:
    app, ref = w["app"], w["ref"]
    deploy(w)
    staged = deploy(w, src=b"Deno.serve(() => new Response('next'))", bundle_only=True)
    assert staged["version"] == 2
    assert app.invocation_target(ref, "hello")["version"] == 1  # not live yet
    out = app.bulk_update_functions(w["owner"], ref, [{"slug": "hello", "version": 2, "name": "Hi"}], w["p"], w["o"])
    assert out[0]["version"] == 2 and out[0]["name"] == "Hi"
    assert app.invocation_target(ref, "hello")["version"] == 2
    with pytest.raises(InvalidInput):
        app.bulk_update_functions(w["owner"], ref, [{"slug": "hello", "version": 7}], w["p"], w["o"])


def test_delete_then_redeploy_continues_version_numbers(w: dict[str, Any]) -> None:
    app, ref = w["app"], w["ref"]
    deploy(w)
    deploy(w, slug="other")
    app.delete_function(w["owner"], ref, "hello", w["p"], w["o"])
    assert [f["slug"] for f in app.list_functions(w["owner"], ref, w["p"])] == ["other"]
    assert app.invocation_target(ref, "hello") is None
    with pytest.raises(NotFound):
        app.get_function(w["owner"], ref, "hello", w["p"])
    with pytest.raises(NotFound):
        app.delete_function(w["owner"], ref, "hello", w["p"], w["o"])
    again = deploy(w)
    assert again["version"] == 2  # a version number never names two bundles


def test_secrets_are_encrypted_listed_by_digest_and_reserved_names_refused(w: dict[str, Any]) -> None:
    app, ref = w["app"], w["ref"]
    app.set_secrets(w["owner"], ref, [{"name": "API_KEY", "value": "s3cret"}, {"name": "B", "value": ""}],
                    w["p"], w["o"])
    listed = app.list_secrets(w["member"], ref, w["p"])
    assert [(s["name"], s["value"]) for s in listed] == [("API_KEY", hashlib.sha256(b"s3cret").hexdigest()),
                                                         ("B", hashlib.sha256(b"").hexdigest())]
    assert app.secrets_env(ref) == {"API_KEY": "s3cret", "B": ""}
    stored = app._secrets(ref).secrets["API_KEY"]["value_enc"]
    assert "s3cret" not in stored and stored.startswith("v1:")
    for bad in ("SUPABASE_URL", "supabase_x", "1ABC", "A-B", ""):
        with pytest.raises(InvalidInput):
            app.set_secrets(w["owner"], ref, [{"name": bad, "value": "v"}], w["p"], w["o"])
    with pytest.raises(Forbidden):
        app.set_secrets(w["member"], ref, [{"name": "X", "value": "v"}], w["p"], w["o"])
    assert app.delete_secrets(w["owner"], ref, ["API_KEY", "NOPE"], w["p"], w["o"]) == ["API_KEY"]
    assert app.secrets_env(ref) == {"B": ""}


def test_logs_filter_by_time_level_kind_and_request(w: dict[str, Any]) -> None:
    app, ref = w["app"], w["ref"]
    deploy(w)
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [
        {"ref": ref, "slug": "hello", "at": t, "level": "info", "kind": "log", "version": 1, "request_id": "r1",
         "status": None, "duration_ms": None, "message": "hi"},
        {"ref": ref, "slug": "hello", "at": t + timedelta(seconds=1), "level": "error", "kind": "log", "version": 1,
         "request_id": "r1", "status": None, "duration_ms": None, "message": "boom"},
        {"ref": ref, "slug": "hello", "at": t + timedelta(seconds=2), "level": "info", "kind": "invocation",
         "version": 1, "request_id": "r1", "status": 200, "duration_ms": 2.5, "message": "POST 200"},
        {"ref": ref, "slug": "other", "at": t, "level": "error", "kind": "log", "version": 1, "request_id": "r2",
         "status": None, "duration_ms": None, "message": "elsewhere"},
    ]
    app.logs.append(rows)
    q = lambda **kw: app.function_logs(w["member"], ref, "hello", kw, w["p"])  # noqa: E731
    assert [x["message"] for x in q()] == ["POST 200", "boom", "hi"]
    assert [x["message"] for x in q(level="warn")] == ["boom"]
    assert [x["message"] for x in q(kind="invocation")] == ["POST 200"]
    assert [x["message"] for x in q(since=(t + timedelta(seconds=1)).isoformat())] == ["POST 200", "boom"]
    assert [x["message"] for x in q(until=int((t + timedelta(seconds=1)).timestamp() * 1000))] == ["hi"]
    assert [x["message"] for x in q(request_id="r1", limit=1)] == ["POST 200"]
    assert q()[0]["timestamp"] == int((t + timedelta(seconds=2)).timestamp() * 1000)
    with pytest.raises(InvalidInput):
        q(level="loud")
    with pytest.raises(InvalidInput):
        q(since="yesterday")


def test_tenant_facts_apply_in_order_and_removal_deletes_functions(w: dict[str, Any]) -> None:
    app, ref = w["app"], w["ref"]
    deploy(w)
    app.set_secrets(w["owner"], ref, [{"name": "K", "value": "v"}], w["p"], w["o"])
    conn = {"db_host": "127.0.0.1", "db_port": 5432, "db_name": f"t_{ref}", "db_user": "postgres", "bucket": "b"}
    env = {"event_id": str(uuid.uuid4()), "producer_position": 5, "payload": {"ref": ref, "connection": conn}}
    assert app.apply_tenant_event(env, "ACTIVE") is True
    assert app.apply_tenant_event(env, "ACTIVE") is False  # a redelivery changes nothing
    older = {**env, "producer_position": 3, "payload": {"ref": ref}}
    assert app.apply_tenant_event(older, "INACTIVE") is False
    assert app.tenant(ref)["db_name"] == f"t_{ref}" and app.tenant(ref)["status"] == "ACTIVE"
    removed = {"event_id": str(uuid.uuid4()), "producer_position": 9, "payload": {"ref": ref}}
    app.apply_tenant_event(removed, "REMOVED")
    app.apply_tenant_event(removed, "REMOVED")
    assert app.invocation_target(ref, "hello") is None and app.secrets_env(ref) == {}
    assert app.tenant(ref)["status"] == "REMOVED" and app.tenant(ref)["db_host"] == "127.0.0.1"


def test_bundles_are_checked_deterministic_and_round_trip(tmp_path: Any) -> None:
    files = [("supabase/functions/hello/index.ts", SRC), ("supabase/functions/hello/lib/util.ts", b"export {}")]
    a = B.pack(files, "index.ts")
    assert a["entrypoint_path"] == "supabase/functions/hello/index.ts"
    assert B.pack(list(reversed(files)), "file:///supabase/functions/hello/index.ts")["sha256"] == a["sha256"]
    assert sorted(B.unpack(a["data"])) == sorted(files)
    out = B.materialize(a["data"], a["sha256"], tmp_path)
    assert (out / "supabase/functions/hello/lib/util.ts").read_bytes() == b"export {}"
    for bad_path in ("../etc/passwd", "a/../../b", "/"):
        with pytest.raises(InvalidInput):
            B.pack([(bad_path, b"x")], "index.ts")
    with pytest.raises(InvalidInput, match="entrypoint_path"):
        B.pack(files, "main.ts")
    with pytest.raises(InvalidInput, match="bundle"):
        B.pack([("index.ts", b"x" * (B.MAX_BUNDLE_BYTES + 1))], "index.ts")
    for slug in ("1abc", "a b", "", "x" * 200):
        with pytest.raises(InvalidInput):
            B.check_slug(slug)


def test_invocation_batches_are_stored_once_even_when_sent_again(w: dict[str, Any], tmp_path: Any) -> None:
    from services.functions.runtime.recorder import Journal

    app: FunctionsApplication = w["app"]
    rec = {"ref": w["ref"], "org_slug": "acme", "slug": "hello", "version": 1, "status": 200, "duration_ms": 1.0,
           "request_id": "r", "at_ms": 1}
    assert app.record_invocations("rt/e1", [rec, rec], first_seq=1) == 0
    # A runtime killed before its checkpoint sends the batch again, perhaps with more after it.
    assert app.record_invocations("rt/e1", [rec, rec, rec], first_seq=1) == 2
    assert app.record_invocations("rt/e1", [rec], first_seq=3) == 0

    # The journal gives back what was appended after the last checkpoint, in order.
    j = Journal(tmp_path, "rt")
    assert j.recover() == []
    seqs = [j.append({"n": i}) for i in range(3)]
    j.commit(seqs[0])
    j.close()
    again = Journal(tmp_path, "rt")
    assert again.recover() == [(2, {"n": 1}), (3, {"n": 2})] and again.epoch == j.epoch
    assert again.append({"n": 3}) == 4
