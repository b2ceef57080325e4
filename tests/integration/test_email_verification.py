"""Sign-up without enumeration and invitations by verified address, through the running
gateway and orgs: a taken address gets the same answer as a new one (and its owner a mail),
a sign-up signs in only through the mailed link (once), and an invitation is accepted only
by a user whose confirmed address is the invited one."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from services.shared.mail import OutboxMailer, outbox_dir
from services.shared.settings import Settings
from tests.support import mailed_link, sign_up_confirmed

PASSWORD = "correct horse battery"


def email(prefix: str = "v") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def mails_to(settings: Settings, to: str) -> list[Any]:
    return [m for m in OutboxMailer(outbox_dir(settings)).list() if m.to == to]


def signed_in(base: str, settings: Settings, address: str) -> requests.Session:
    sess = requests.Session()
    info = sign_up_confirmed(sess, base, settings, address, PASSWORD)
    sess.headers["X-CSRF-Token"] = info["csrf_token"]
    return sess


def test_sign_up_with_a_taken_address_looks_like_a_new_one(gateway_url: str, settings: Settings) -> None:
    taken = email("taken")
    signed_in(gateway_url, settings, taken)
    fresh = email("fresh")
    answers = {}
    for address in (taken, fresh):
        r = requests.post(gateway_url + "/platform/auth/signup", timeout=20,
                          json={"email": address, "password": "someone else's password"})
        answers[address] = r
    a, b = answers[taken], answers[fresh]
    assert a.status_code == b.status_code == 202, (a.text, b.text)
    assert set(a.json()) == set(b.json()) == {"message", "email"}
    assert a.json()["message"].replace(taken, "X") == b.json()["message"].replace(fresh, "X")
    assert "Set-Cookie" not in a.headers and "Set-Cookie" not in b.headers
    # The owner of the taken address hears of it; the account is unchanged.
    link = mailed_link(settings, taken, "/sign-in")
    assert "tried to sign up" in mails_to(settings, taken)[-1].body and "/verify-email" not in link
    r = requests.post(gateway_url + "/platform/auth/signin", timeout=20,
                      json={"email": taken, "password": "someone else's password"})
    assert r.status_code == 401
    # The new address cannot sign in before its link is followed, and says no more than a
    # wrong password would.
    r = requests.post(gateway_url + "/platform/auth/signin", timeout=20,
                      json={"email": fresh, "password": "someone else's password"})
    wrong = requests.post(gateway_url + "/platform/auth/signin", timeout=20,
                          json={"email": taken, "password": "not the password"})
    assert r.status_code == wrong.status_code == 401 and r.json() == wrong.json()


def test_the_mailed_link_signs_in_once(gateway_url: str, settings: Settings) -> None:
    address = email()
    r = requests.post(gateway_url + "/platform/auth/signup", timeout=20,
                      json={"email": address, "password": PASSWORD, "display_name": "Vera", "next": "/account"})
    assert r.status_code == 202, r.text
    link = mailed_link(settings, address, "/verify-email")
    assert parse_qs(urlsplit(link).query)["next"] == ["/account"]
    # what is stored is a hash: the token's secret is nowhere in orgs' events
    import psycopg

    with psycopg.connect(settings.db_conninfo) as conn:
        stored = conn.execute("SELECT string_agg(encode(state, 'escape'), '') FROM orgs.orgs_events").fetchone()[0]
    assert token_of(link).split(".")[1] not in stored
    sess = requests.Session()
    r = sess.post(gateway_url + "/platform/auth/verify-email", json={"token": token_of(link)}, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == address and r.json()["user"]["email_verified"] is True
    assert sess.get(gateway_url + "/platform/profile", timeout=20).json()["display_name"] == "Vera"
    again = requests.post(gateway_url + "/platform/auth/verify-email", json={"token": token_of(link)}, timeout=20)
    assert again.status_code == 400 and "Set-Cookie" not in again.headers, again.text
    r = requests.post(gateway_url + "/platform/auth/signin", json={"email": address, "password": PASSWORD}, timeout=20)
    assert r.status_code == 200
    for bad in ("", "nonsense", "0" * 32 + "." + "a" * 43):
        r = requests.post(gateway_url + "/platform/auth/verify-email", json={"token": bad}, timeout=20)
        assert r.status_code == 400, r.text
    r = requests.post(gateway_url + "/platform/auth/signup", timeout=20,
                      json={"email": email(), "password": PASSWORD, "next": "//evil.example/"})
    assert r.status_code == 400 and "next" in r.json()["errors"]


def test_invitation_needs_a_verified_address_equal_to_the_invited_one(gateway_url: str, settings: Settings) -> None:
    owner = signed_in(gateway_url, settings, email("owner"))
    slug = owner.post(gateway_url + "/v1/organizations", json={"name": "Verified Team"}, timeout=20).json()["slug"]
    invited = email("invited")
    r = owner.post(gateway_url + f"/platform/organizations/{slug}/invitations", timeout=20,
                   json={"email": invited, "role": "member"})
    assert r.status_code == 201, r.text
    invitation = token_of(mailed_link(settings, invited, "/invitations/accept"))

    # Someone else's account cannot take it ...
    other = signed_in(gateway_url, settings, email("other"))
    r = other.post(gateway_url + "/platform/invitations/accept", json={"token": invitation}, timeout=20)
    assert r.status_code == 403 and "different email" in r.json()["message"]
    # ... nor by moving to the invited address without proving it owns that mailbox.
    r = other.patch(gateway_url + "/platform/profile", json={"email": invited}, timeout=20)
    assert r.status_code == 200 and r.json()["email_verified"] is False, r.text
    r = other.post(gateway_url + "/platform/invitations/accept", json={"token": invitation}, timeout=20)
    assert r.status_code == 403 and "confirm your email" in r.json()["message"], r.text
    members = owner.get(gateway_url + f"/platform/organizations/{slug}/members", timeout=20).json()
    assert [m["email"] for m in members] != [] and invited not in [m["email"] for m in members]

    # The mailbox's owner confirms (a new link on request, the newest one counts) and accepts.
    r = other.post(gateway_url + "/platform/profile/verify-email", json={}, timeout=20)
    assert r.status_code == 202 and r.json() == {"email": invited, "sent": True}, r.text
    link = mailed_link(settings, invited, "/verify-email")
    r = other.post(gateway_url + "/platform/auth/verify-email", json={"token": token_of(link)}, timeout=20)
    assert r.status_code == 200, r.text
    other.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    r = other.post(gateway_url + "/platform/invitations/accept", json={"token": invitation}, timeout=20)
    assert r.status_code == 200 and r.json()["slug"] == slug, r.text
