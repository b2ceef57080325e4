"""What the API fuzz (test_fuzz.py) found, kept as plain tests: one per case, each the
request that failed and what the answer must be now.

"Documented" means the status is listed for the operation in the OpenAPI document the
gateway serves (/platform/openapi.json): a client generated from it must know every answer.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

import pytest
import requests

from tests.integration.test_project_lifecycle import new_org


@lru_cache(maxsize=None)
def _document(gateway_url: str) -> dict[str, Any]:
    return requests.get(gateway_url + "/platform/openapi.json", timeout=20).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def owner(rpc: Any, gateway_url: str) -> dict[str, str]:
    """A user with an organization and a project (created, not waited for: the routes below
    refuse the request before the project's state matters)."""
    email = f"fuzzreg-{uuid.uuid4().hex[:10]}@example.com"
    rpc.orgs.register_user(email, "correct horse battery")
    token = rpc.orgs.issue_token(email, "tests")["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    r = requests.post(gateway_url + "/v1/organizations", json={"name": "Fuzz regressions"}, headers=bearer, timeout=20)
    assert r.status_code == 201, r.text
    slug = r.json()["slug"]
    r = requests.post(gateway_url + "/v1/projects", headers=bearer, timeout=20,
                      json={"name": "Fuzz reg", "organization_slug": slug, "db_pass": "Fuzz-Pass-12345"})
    assert r.status_code == 201, r.text
    return {"token": token, "slug": slug, "ref": r.json()["ref"]}


def documented(gateway_url: str, method: str, path: str) -> set[int]:
    operation = _document(gateway_url)["paths"][path][method.lower()]
    return {int(code) for code in operation["responses"]}


def assert_json_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers["Content-Type"]
    assert isinstance(response.json()["message"], str) and response.json()["message"]


# ---- response bodies that broke their own schema ---------------------------------------------

def test_subscription_history_says_from_when_each_plan_started(http: Any, user_token: dict[str, str]) -> None:
    """The history's "from" was dropped (the schema read an attribute `from_` from a dict)."""
    token = user_token["token"]
    slug = new_org(http, token, "Fuzz history")
    r = http.get(f"/platform/organizations/{slug}/billing/subscription", token=token)
    assert r.status_code == 200, r.text
    history = r.json()["history"]
    assert history and all(isinstance(h["from"], str) and h["from"] for h in history), history
    assert history[0]["from"] == r.json()["started_at"]


def test_plan_change_preview_says_from_what_each_entitlement_changes(http: Any, user_token: dict[str, str]) -> None:
    token = user_token["token"]
    slug = new_org(http, token, "Fuzz preview")
    r = http.post(f"/platform/organizations/{slug}/billing/subscription/preview", token=token, json={"plan": "pro"})
    assert r.status_code == 200, r.text
    changes = r.json()["changes"]
    assert changes and all("from" in c and "to" in c for c in changes), changes
    assert {c["entitlement"]: c["from"] for c in changes}.get("max_projects") == 2, changes


# ---- answers that were not JSON --------------------------------------------------------------

def test_a_path_no_route_can_match_is_a_json_404(gateway_url: str, user_token: dict[str, str]) -> None:
    """A newline in a path argument: nameko's own router matched nothing and answered with
    werkzeug's HTML page."""
    r = requests.delete(gateway_url + "/platform/profile/tokens/abc%0Adef", timeout=20,
                        headers={"Authorization": f"Bearer {user_token['token']}"})
    assert_json_error(r, 404)
    assert r.status_code in documented(gateway_url, "DELETE", "/platform/profile/tokens/{token_id}")


# ---- statuses the document did not list -------------------------------------------------------

def test_wrong_password_on_sign_in_is_a_documented_401(gateway_url: str, user_token: dict[str, str]) -> None:
    r = requests.post(gateway_url + "/platform/auth/signin", timeout=20,
                      json={"email": user_token["email"], "password": "not the password"})
    assert_json_error(r, 401)
    assert 401 in documented(gateway_url, "POST", "/platform/auth/signin")


def test_a_bad_query_parameter_is_a_documented_400(gateway_url: str, http: Any, user_token: dict[str, str]) -> None:
    token = user_token["token"]
    slug = new_org(http, token, "Fuzz audit")
    r = http.get(f"/platform/organizations/{slug}/audit?limit=5x", token=token)
    assert_json_error(r, 400)
    assert 400 in documented(gateway_url, "GET", "/platform/organizations/{slug}/audit")


def test_an_encoded_slash_in_a_path_argument_is_a_documented_400(gateway_url: str) -> None:
    """gateway/paths.py refuses encoded separators in any path, before routing."""
    r = requests.get(gateway_url + "/platform/invitations/a%2Fb", timeout=20)
    assert_json_error(r, 400)
    assert 400 in documented(gateway_url, "GET", "/platform/invitations/{token}")


def test_a_body_the_handler_reads_itself_is_refused_with_a_documented_400(gateway_url: str) -> None:
    """Routes that read their own body (no declared schema: the Stripe webhook, secrets,
    function deploys) did not list 400 for a body they refuse."""
    r = requests.post(gateway_url + "/platform/billing/stripe/webhook", data=b"not json", timeout=20)
    assert_json_error(r, 400)
    assert 400 in documented(gateway_url, "POST", "/platform/billing/stripe/webhook")


def test_deleting_an_organization_that_has_projects_is_a_documented_409(gateway_url: str, http: Any,
                                                                        owner: dict[str, str]) -> None:
    r = http.request("DELETE", f"/platform/organizations/{owner['slug']}", token=owner["token"])
    assert_json_error(r, 409)
    assert 409 in documented(gateway_url, "DELETE", "/platform/organizations/{slug}")


def test_secrets_without_a_body_is_a_documented_400(gateway_url: str, http: Any, owner: dict[str, str]) -> None:
    """POST /v1/projects/{ref}/secrets reads its (array) body itself: the document listed no 400."""
    r = http.post(f"/v1/projects/{owner['ref']}/secrets", token=owner["token"])
    assert_json_error(r, 400)
    assert 400 in documented(gateway_url, "POST", "/v1/projects/{ref}/secrets")


def test_deploying_a_function_without_multipart_is_a_documented_415(gateway_url: str, http: Any,
                                                                   owner: dict[str, str]) -> None:
    r = http.post(f"/v1/projects/{owner['ref']}/functions/deploy?slug=hello", token=owner["token"])
    assert_json_error(r, 415)
    assert 415 in documented(gateway_url, "POST", "/v1/projects/{ref}/functions/deploy")


def test_the_only_owner_leaving_is_a_documented_409(gateway_url: str, http: Any, user_token: dict[str, str]) -> None:
    token = user_token["token"]
    slug = new_org(http, token, "Fuzz lonely org")
    r = http.post(f"/platform/organizations/{slug}/leave", token=token)
    assert_json_error(r, 409)
    assert 409 in documented(gateway_url, "POST", "/platform/organizations/{slug}/leave")
