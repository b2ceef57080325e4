"""Time travel against the running platform: `platformctl history state/diff` give back what
the API answered at that time (recorded during the test), with actor and request id."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

import pytest

from tests.integration.test_platformctl import Result, ctl  # noqa: F401 -- the fixture
from tests.integration.test_project_lifecycle import new_org, wait_status


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def state(run: Callable[..., Result], *argv: str) -> dict[str, Any]:
    r = run("history", "state", *argv)
    assert r.code == 0, r.err
    header, body = r.out.split("\n", 1)
    return {"header": header, "state": json.loads(body)}


def test_state_at_past_times_equals_what_the_api_answered(http: Any, user_token: dict[str, str], rpc: Any,
                                                          ctl: Callable[..., Result]) -> None:  # noqa: F811
    token, user_id = user_token["token"], user_token["user_id"]
    slug = new_org(http, token, "Time Travel")
    ref = http.post("/v1/projects", token=token, json={"name": "tt", "organization_slug": slug,
                                                       "db_pass": "good-password-1"}).json()["ref"]
    wait_status(http, token, ref, {"ACTIVE_HEALTHY"})

    # Record what the API answers, and when, across three changes (each with its own request id).
    seen: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = []

    def record() -> None:
        seen.append((now(), http.get(f"/v1/projects/{ref}/postgrest", token=token).json(),
                     http.get(f"/v1/projects/{ref}/config/auth", token=token).json(),
                     http.get(f"/platform/organizations/{slug}", token=token).json()))
        time.sleep(0.01)  # the next change's timestamp is strictly later than this record's

    request_ids = [str(uuid.uuid4()) for _ in range(3)]
    record()
    r = http.request("PATCH", f"/v1/projects/{ref}/postgrest", token=token, json={"max_rows": 250},
                     headers={"X-Request-Id": request_ids[0]})
    assert r.status_code == 200, r.text
    record()
    r = http.request("PATCH", f"/v1/projects/{ref}/config/auth", token=token,
                     json={"site_url": "https://then.example.com"}, headers={"X-Request-Id": request_ids[1]})
    assert r.status_code == 200, r.text
    r = http.request("PATCH", f"/platform/organizations/{slug}", token=token, json={"name": "Renamed Later"},
                     headers={"X-Request-Id": request_ids[2]})
    assert r.status_code == 200, r.text
    record()
    assert seen[0][1]["max_rows"] != seen[1][1]["max_rows"] and seen[1][3]["name"] != seen[2][3]["name"]

    for at, postgrest, auth, org in seen:
        project = state(ctl, "project", ref, "--at", at)["state"]
        for key in ("db_schema", "max_rows", "db_extra_search_path", "db_pool"):
            assert project["postgrest"][key] == postgrest[key], (at, key)
        assert project["auth_effective"] == auth, at
        assert project["status"] == "ACTIVE_HEALTHY"
        # secrets are references, never the stored value
        assert project["jwt_secret_enc"].startswith("secret:") and project["db_pass_enc"].startswith("secret:")
        organization = state(ctl, "organization", slug, "--at", at)["state"]
        assert organization["name"] == org["name"] and organization["members"] == {user_id: "owner"}

    # Before the project existed: a clear error; by log position: the first event's state.
    before = ctl("history", "state", "project", ref, "--at", "2000-01-01T00:00:00Z")
    assert before.code == 1 and "did not exist yet" in before.err

    # What changed between the first and the last record, by whom, through which request.
    d = ctl("history", "diff", "project", ref, "--from", seen[0][0], "--to", seen[2][0])
    assert d.code == 0, d.err
    assert "postgrest.max_rows: 1000 -> 250" in d.out and "auth_effective.site_url: 'http://localhost:3000' -> 'https://then.example.com'" in d.out
    lines = [line for line in d.out.splitlines() if "PostgrestConfigChanged" in line]
    assert len(lines) == 1 and f"actor {user_id}" in lines[0] and f"correlation {request_ids[0]}" in lines[0]
    d = ctl("history", "diff", "organization", slug, "--from", seen[1][0])
    assert d.code == 0 and "name: 'Time Travel' -> 'Renamed Later'" in d.out and request_ids[2] in d.out
    # The provisioner's outcomes were applied by the system from its messages.
    d = ctl("history", "diff", "project", ref, "--from", "0", "--to", seen[0][0])
    assert "OperationCompleted" in d.out and "actor system" in d.out
    requested = next(line for line in d.out.splitlines() if "Project.Requested" in line)
    position = requested.split("position", 1)[1].split()[0]
    first = state(ctl, "project", ref, "--at", position)
    assert "version 1 of" in first["header"] and first["state"]["status"] == "COMING_UP"

    # The other kinds: a project whose realtime settings never changed has no history yet.
    sub = state(ctl, "subscription", slug)["state"]
    assert sub["org_slug"] == slug and sub["plan"] == "free"
    rt = ctl("history", "state", "realtime-config", ref)
    assert rt.code == 1 and "no realtime-config" in rt.err
    missing = ctl("history", "state", "project", "nosuchprojectref00")
    assert missing.code == 1 and "no project" in missing.err
    bad = ctl("history", "state", "project", ref, "--at", "yesterday")
    assert bad.code == 1 and "ISO time" in bad.err

    # The admin panel's route: the same state and the timeline, for platform admins only.
    url = f"/platform/admin/history/project?id={ref}&at={quote(seen[0][0])}"
    assert http.get(url, token=token).status_code == 403
    admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(admin_email, "correct horse battery")
    rpc.orgs.promote_user(admin_email, {"actor": "tests"})
    admin = rpc.orgs.issue_token(admin_email, "tests")["token"]
    r = http.get(url, token=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"]["auth_effective"] == seen[0][2] and body["state"]["postgrest"]["max_rows"] == 1000
    assert body["version"] < body["head"] == len(body["events"])
    assert [e["correlation_id"] for e in body["events"] if e["event"] == "Project.PostgrestConfigChanged"] == \
        [request_ids[0]]
    # The services ask too: a forged RPC from a non-admin is refused.
    for service in (rpc.projects, rpc.orgs, rpc.provisioner):
        with pytest.raises(Exception, match="Forbidden|admin"):
            service.history(user_id, "project", ref, None)
    r = http.get(f"/platform/admin/history/organization?id={slug}", token=admin)
    assert r.status_code == 200 and r.json()["state"]["name"] == "Renamed Later"
    r = http.get(f"/platform/admin/history/realtime-config?id={ref}", token=admin)
    assert r.status_code == 404 and "no realtime-config" in r.text
    r = http.get(f"/platform/admin/history/project?id={ref}&at=soon", token=admin)
    assert r.status_code == 400 and "ISO time" in r.text
    http.request("DELETE", f"/v1/projects/{ref}", token=token)


def test_settings_rollback_restores_exact_earlier_values_and_keeps_history(http: Any,
                                                                           user_token: dict[str, str]) -> None:
    token = user_token["token"]
    slug = new_org(http, token, "Rollback")
    ref = http.post("/v1/projects", token=token, json={"name": "rb", "organization_slug": slug,
                                                       "db_pass": "good-password-1"}).json()["ref"]

    def patch(path: str, body: dict[str, Any]) -> None:
        r = http.request("PATCH", f"/v1/projects/{ref}/{path}", token=token, json=body)
        assert r.status_code == 200, r.text

    def current() -> tuple[dict[str, Any], dict[str, Any]]:
        return (http.get(f"/v1/projects/{ref}/postgrest", token=token).json(),
                http.get(f"/v1/projects/{ref}/config/auth", token=token).json())

    patch("postgrest", {"max_rows": 250, "db_schema": "public,api"})
    patch("config/auth", {"site_url": "https://one.example.com", "external_github_enabled": True,
                          "external_github_secret": "first-github-secret"})
    earlier = current()
    version = http.get(f"/platform/projects/{ref}/settings/history", token=token).json()[0]["version"]
    patch("postgrest", {"max_rows": 9, "db_extra_search_path": "public"})
    patch("config/auth", {"site_url": "https://two.example.com", "external_github_secret": "second-github-secret",
                          "jwt_exp": 600})
    assert current() != earlier

    r = http.post(f"/platform/projects/{ref}/settings/rollback", token=token, json={"version": version})
    assert r.status_code == 200, r.text
    assert r.json()["restored_version"] == version and "first-github-secret" not in r.text
    assert r.json()["auth"]["external_github_secret"] == "(secret set)"
    assert current() == earlier  # the exact earlier values, the secret included (restored from storage)

    history = http.get(f"/platform/projects/{ref}/settings/history", token=token).json()
    assert history[0]["setting"] == "rollback" and history[0]["restores_version"] == version
    assert [h["setting"] for h in history[1:]] == ["auth", "postgrest", "auth", "postgrest"]  # nothing rewritten
    assert "secret" not in json.dumps(history).replace("(secret set)", "").replace("external_github_secret", "")

    # Bad input changes nothing.
    for bad in ({"version": 0}, {"version": 10_000}, {"version": "2"}, {}):
        r = http.post(f"/platform/projects/{ref}/settings/rollback", token=token, json=bad)
        assert r.status_code == 400, (bad, r.text)
    again = http.post(f"/platform/projects/{ref}/settings/rollback", token=token, json={"version": version})
    assert again.status_code == 400 and "already as they were" in again.text
    assert len(http.get(f"/platform/projects/{ref}/settings/history", token=token).json()) == len(history)
    http.request("DELETE", f"/v1/projects/{ref}", token=token)
