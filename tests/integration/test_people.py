"""Organizations and people through the gateway: sessions and CSRF, tokens, profiles,
invitations by mail, roles, org switching, audit, cross-org isolation, bad input."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import psycopg
import pytest
import requests

import gateway.app
gateway.app._load_routes()  # every route module registers its routes
from gateway.routing import ROUTES
from services.shared.mail import OutboxMailer, outbox_dir
from services.shared.settings import Settings
from tests.support import mailed_link, sign_up_confirmed


def email() -> str:
    return f"p-{uuid.uuid4().hex[:12]}@example.com"


class Browser:
    """A signed-in web user: cookie session plus the CSRF header on writes."""

    def __init__(self, base: str):
        self.base = base
        self.s = requests.Session()
        self.csrf = ""

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if method in ("POST", "PUT", "PATCH", "DELETE") and self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return self.s.request(method, self.base + path, headers=headers, timeout=20, **kw)

    def signup(self, address: str, password: str = "a good password") -> dict[str, Any]:
        """Sign up and follow the mailed confirmation link, which starts the session."""
        info = sign_up_confirmed(self.s, self.base, _SETTINGS[0], address, password, address.split("@")[0])
        self.csrf = info["csrf_token"]
        return dict(info["user"])


_SETTINGS: list[Settings] = []


@pytest.fixture(autouse=True)
def _outbox(settings: Settings) -> None:
    _SETTINGS[:] = [settings]  # Browser.signup reads the confirmation link from this outbox


def latest_mail_token(settings: Settings, to: str) -> str:
    mails = [m for m in OutboxMailer(outbox_dir(settings)).list() if m.to == to]
    assert mails, f"no mail to {to}"
    m = re.search(r"token=([\w.-]+)", mails[-1].body)
    assert m
    return m.group(1)


def orgs_event_count(settings: Settings) -> int:
    with psycopg.connect(settings.db_conninfo) as conn:
        return int(conn.execute("SELECT count(*) FROM orgs.orgs_events").fetchone()[0])


@pytest.fixture
def browser(gateway_url: str) -> Browser:
    return Browser(gateway_url)


def test_sign_up_in_out_and_csrf(gateway_url: str) -> None:
    b = Browser(gateway_url)
    address = email()
    user = b.signup(address)
    assert user["email"] == address
    cookie = b.s.cookies.get("sp_session")
    assert cookie and "HttpOnly" in str(b.s.cookies) or cookie
    assert b.call("GET", "/platform/auth/session").json()["user"]["id"] == user["id"]
    # A write with the cookie but without the CSRF header is refused and changes nothing.
    r = b.s.post(gateway_url + "/v1/organizations", json={"name": "No CSRF"}, timeout=20)
    assert r.status_code == 403 and "CSRF" in r.json()["message"]
    assert b.call("GET", "/v1/organizations").json() == []
    assert b.call("POST", "/v1/organizations", json={"name": "With CSRF"}).status_code == 201
    # Sign out ends the session on the server: the old cookie no longer works.
    assert b.call("POST", "/platform/auth/signout").status_code == 204
    replay = requests.get(gateway_url + "/platform/auth/session", cookies={"sp_session": cookie}, timeout=20)
    assert replay.status_code == 401
    # Sign in again.
    b2 = Browser(gateway_url)
    bad = b2.call("POST", "/platform/auth/signin", json={"email": address, "password": "wrong password"})
    assert bad.status_code == 401
    ok = b2.call("POST", "/platform/auth/signin", json={"email": address, "password": "a good password"})
    assert ok.status_code == 200 and ok.json()["user"]["id"] == user["id"]


def test_token_lifecycle_over_http(browser: Browser, http: Any) -> None:
    browser.signup(email())
    r = browser.call("POST", "/platform/profile/tokens", json={"name": "laptop"})
    assert r.status_code == 201
    token = r.json()["token"]
    assert re.fullmatch(r"sbp_[0-9a-f]{40}", token)
    listed = browser.call("GET", "/platform/profile/tokens").json()
    assert [t["name"] for t in listed] == ["laptop"] and "token" not in listed[0]
    assert http.get("/v1/organizations", token=token).status_code == 200
    used = browser.call("GET", "/platform/profile/tokens")
    assert used.status_code == 200, used.text
    assert used.json()[0]["last_used_at"]
    assert browser.call("DELETE", f"/platform/profile/tokens/{r.json()['id']}").status_code == 204
    assert http.get("/v1/organizations", token=token).status_code == 401


def test_invite_accept_roles_switch_and_audit(gateway_url: str, settings: Settings, http: Any) -> None:
    owner, invitee = Browser(gateway_url), Browser(gateway_url)
    owner.signup(email())
    invitee_email = email()
    invitee.signup(invitee_email)
    slug = owner.call("POST", "/v1/organizations", json={"name": "Team Org"}).json()["slug"]
    r = owner.call("POST", f"/platform/organizations/{slug}/invitations", json={"email": invitee_email, "role": "member"})
    assert r.status_code == 201 and r.json()["status"] == "pending"
    token = latest_mail_token(settings, invitee_email)
    preview = requests.get(f"{gateway_url}/platform/invitations/{token}", timeout=20).json()
    assert preview["organization"]["slug"] == slug and preview["role"] == "member"
    r = invitee.call("POST", "/platform/invitations/accept", json={"token": token})
    assert r.status_code == 200 and r.json()["role"] == "member"
    again = invitee.call("POST", "/platform/invitations/accept", json={"token": token})
    assert again.status_code == 410
    # The member may read but not manage.
    assert invitee.call("GET", f"/platform/organizations/{slug}/members").status_code == 200
    assert invitee.call("PATCH", f"/platform/organizations/{slug}", json={"name": "Mine now"}).status_code == 403
    assert invitee.call("GET", f"/platform/organizations/{slug}/audit").status_code == 403
    # v1 members list, as the spec shapes it (validated by the http fixture).
    tok = owner.call("POST", "/platform/profile/tokens", json={"name": "t"}).json()["token"]
    members = http.get(f"/v1/organizations/{slug}/members", token=tok).json()
    assert {m["role_name"] for m in members} == {"owner", "member"}
    # Org switching: the invitee's own org stays current until they pick the new one.
    own = invitee.call("POST", "/v1/organizations", json={"name": "Invitee Org"}).json()["slug"]
    r = invitee.call("PUT", "/platform/profile/current-organization", json={"slug": slug})
    assert r.status_code == 200 and r.json()["current_organization"] == slug
    assert set(r.json()["organizations"]) == {slug, own}
    # Promote, then audit shows who did what.
    member_id = [m["user_id"] for m in members if m["role_name"] == "member"][0]
    assert owner.call("PATCH", f"/platform/organizations/{slug}/members/{member_id}", json={"role": "admin"}).status_code == 200
    audit = owner.call("GET", f"/platform/organizations/{slug}/audit").json()
    assert [e["action"] for e in audit[:3]] == ["role_changed", "invitation_accepted", "invitation_created"]
    assert audit[0]["actor_id"] != audit[1]["actor_id"]  # owner promoted; invitee accepted


def valid_body(schema: Any) -> dict[str, Any]:
    """A body that passes the route's schema: required fields with plausible values."""
    from marshmallow import fields as f
    from marshmallow import validate as v

    out: dict[str, Any] = {}
    for name, field in schema().fields.items():
        if not field.required:
            continue
        choices = [x.choices for x in field.validators if isinstance(x, v.OneOf)]
        if choices:
            out[name] = list(choices[0])[-1]
        elif isinstance(field, f.Email):
            out[name] = email()
        elif isinstance(field, (f.Integer, f.Float, f.Decimal)):
            out[name] = 1
        elif isinstance(field, f.Boolean):
            out[name] = True
        elif isinstance(field, f.Dict):
            out[name] = {}
        elif isinstance(field, f.List):
            out[name] = []
        elif name.endswith("_id"):
            out[name] = str(uuid.uuid4())
        else:
            out[name] = "x"
    return out


def test_cross_org_access_is_denied_on_every_route(gateway_url: str, http: Any) -> None:
    a, b = Browser(gateway_url), Browser(gateway_url)
    a.signup(email())
    b.signup(email())
    slug_b = b.call("POST", "/v1/organizations", json={"name": "Org B"}).json()["slug"]
    ref_b = b.call("POST", "/v1/projects", json={"name": "Project B", "organization_slug": slug_b,
                                               "db_pass": "b-password-123"}).json()["ref"]
    a.call("POST", "/v1/organizations", json={"name": "Org A"})
    scoped = [r for r in ROUTES if "<slug>" in r.path or "<ref>" in r.path]
    assert len(scoped) >= 30
    for r in scoped:
        path = r.path.replace("<slug>", slug_b).replace("<ref>", ref_b)
        path = re.sub(r"<(?:\w+:)?\w+>", lambda m: uuid.uuid4().hex, path)
        # Send a body that passes validation for this route, so authorisation is what decides.
        body = valid_body(r.body) if r.body is not None else None
        resp = a.call(r.method, path, json=body)
        assert resp.status_code in (403, 404), f"{r.method} {path}: {resp.status_code} {resp.text}"
        # Only an error message comes back (it may echo what the caller sent), never data.
        data = resp.json() if resp.content else {}
        assert set(data) <= {"message", "errors"} and "Org B" not in resp.text and "Project B" not in resp.text
    assert b.call("GET", f"/platform/organizations/{slug_b}").json()["name"] == "Org B"


@pytest.mark.parametrize("path, body, field", [
    ("/platform/auth/signup", {"email": "not-an-email", "password": "long enough"}, "email"),
    ("/platform/auth/signup", {"email": "x@example.com", "password": "short"}, "password"),
    ("/platform/auth/signup", {"email": "x@example.com", "password": "long enough", "admin": True}, "admin"),
    ("/platform/auth/signup", {"email": ["x@example.com"], "password": "long enough"}, "email"),
    ("/v1/organizations", {"name": "n" * 257}, "name"),
    ("/v1/organizations", {"name": 7}, "name"),
    ("/v1/organizations", {"name": "ok", "extra": 1}, "extra"),
])
def test_bad_input_gets_field_errors_and_writes_nothing(browser: Browser, settings: Settings,
                                                        path: str, body: dict[str, Any], field: str) -> None:
    browser.signup(email())
    before = orgs_event_count(settings)
    r = browser.call("POST", path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["message"] and field in r.json()["errors"]
    assert orgs_event_count(settings) == before


def test_duplicate_signup_and_last_owner(browser: Browser, gateway_url: str, settings: Settings) -> None:
    address = email()
    browser.signup(address)
    # A taken address gets the same answer as a new one, no session; its owner gets a mail.
    dup = Browser(gateway_url).call("POST", "/platform/auth/signup", json={"email": address, "password": "another one"})
    assert dup.status_code == 202 and "sp_session" not in dup.cookies, dup.text
    assert mailed_link(settings, address, "/sign-in")
    slug = browser.call("POST", "/v1/organizations", json={"name": "Solo"}).json()["slug"]
    r = browser.call("POST", f"/platform/organizations/{slug}/leave")
    assert r.status_code == 409 and "owner" in r.json()["message"]
    assert browser.call("DELETE", f"/platform/organizations/{slug}").status_code == 204
    assert browser.call("GET", f"/platform/organizations/{slug}").status_code == 404


def test_openapi_document_is_served_and_current(gateway_url: str) -> None:
    from gateway.openapi import document

    served = requests.get(gateway_url + "/platform/openapi.json", timeout=20).json()
    assert served == document()
    assert "/platform/organizations/{slug}/invitations" in served["paths"]
