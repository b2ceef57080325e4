"""The thin slice through the whole backbone: HTTP -> orgs store -> relay -> RabbitMQ ->
billing's idempotent consumer -> a gateway read that shows both."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.support import wait_for


def test_create_org_reaches_billing(http: Any, user_token: dict[str, str]) -> None:
    # Create the org through the Management API v1 route.
    r = http.post("/v1/organizations", token=user_token["token"], json={"name": "Acme Corp"})
    assert r.status_code == 201, r.text
    org = r.json()
    assert org["slug"] == org["id"] and org["name"] == "Acme Corp"
    assert org["slug"].startswith("acme-corp")

    # billing learns of it through RabbitMQ and records a free plan; the gateway read shows both.
    def plan() -> Any:
        body = http.get(f"/v1/organizations/{org['slug']}", token=user_token["token"]).json()
        return body.get("plan")

    assert wait_for("billing's free plan", plan) == "free"

    # The creator's organization list includes it.
    listed = http.get("/v1/organizations", token=user_token["token"]).json()
    assert {o["slug"] for o in listed} >= {org["slug"]}


def test_same_name_gets_distinct_slug(http: Any, user_token: dict[str, str]) -> None:
    a = http.post("/v1/organizations", token=user_token["token"], json={"name": "Twin"}).json()
    b = http.post("/v1/organizations", token=user_token["token"], json={"name": "Twin"}).json()
    assert a["slug"] != b["slug"]


def test_non_member_gets_404_not_data(http: Any, rpc: Any, user_token: dict[str, str]) -> None:
    org = http.post("/v1/organizations", token=user_token["token"], json={"name": "Private"}).json()
    other = f"other-{time.time_ns()}@example.com"
    rpc.orgs.register_user(other, "another password")
    other_token = rpc.orgs.issue_token(other, "t")["token"]
    r = http.get(f"/v1/organizations/{org['slug']}", token=other_token)
    assert r.status_code == 404
    assert "name" not in r.json()


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"{not json", "malformed JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"nam": "x"}', "name"),
        (b'{"name": 5}', "name"),
        (b'{"name": ""}', "name"),
        (b'{"name": "' + b"x" * 257 + b'"}', "name"),
    ],
)
def test_bad_input_is_400_and_changes_nothing(http: Any, user_token: dict[str, str], body: bytes, expected: str) -> None:
    before = http.get("/v1/organizations", token=user_token["token"]).json()
    r = http.post("/v1/organizations", token=user_token["token"], data=body,
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert expected in r.json()["message"]
    assert http.get("/v1/organizations", token=user_token["token"]).json() == before


@pytest.mark.parametrize("auth", [None, "Bearer sbp_" + "0" * 40, "Bearer nonsense", "Basic abc"])
def test_unknown_token_is_401(http: Any, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    r = http.post("/v1/organizations", json={"name": "x"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["message"]


def test_unknown_route_is_json_404(http: Any) -> None:
    r = http.get("/v1/nothing-here")
    assert r.status_code == 404 and "message" in r.json()


def test_token_revoked_elsewhere_is_refused_within_a_second(http: Any, rpc: Any, user_token: dict[str, str]) -> None:
    # The gateway remembers who the token belongs to (a short TTL) ...
    for _ in range(3):
        assert http.get("/v1/organizations", token=user_token["token"]).status_code == 200
    [token] = rpc.orgs.list_tokens(user_token["user_id"])
    # ... and a revoke that does not pass through it (platformctl, another gateway) reaches it
    # as orgs' token_revoked event.
    rpc.orgs.revoke_token(user_token["user_id"], token["id"])
    t0 = time.monotonic()
    wait_for("the revoked token refused", lambda: http.get("/v1/organizations", token=user_token["token"]).status_code == 401,
             timeout=1.0, interval=0.02)
    assert time.monotonic() - t0 <= 1.0


def test_user_disabled_elsewhere_is_refused_within_a_second(http: Any, rpc: Any, user_token: dict[str, str]) -> None:
    admin = f"admin-{time.time_ns()}@example.com"
    admin_id = rpc.orgs.register_user(admin, "another password")["id"]
    rpc.orgs.promote_user(admin)
    assert http.get("/v1/organizations", token=user_token["token"]).status_code == 200
    rpc.orgs.admin_set_disabled(admin_id, user_token["user_id"], True)
    wait_for("the disabled user's token refused",
             lambda: http.get("/v1/organizations", token=user_token["token"]).status_code == 401,
             timeout=1.0, interval=0.02)


def test_organization_list_follows_a_rename_made_elsewhere(http: Any, rpc: Any, user_token: dict[str, str]) -> None:
    org = http.post("/v1/organizations", token=user_token["token"], json={"name": "Before"}).json()
    assert org["slug"] in {o["slug"] for o in http.get("/v1/organizations", token=user_token["token"]).json()}
    rpc.orgs.update_organization(user_token["user_id"], org["slug"], {"name": "After"})

    def renamed() -> bool:
        listed = http.get("/v1/organizations", token=user_token["token"]).json()
        return any(o["slug"] == org["slug"] and o["name"] == "After" for o in listed)

    wait_for("the renamed organization listed", renamed, timeout=1.0, interval=0.02)
