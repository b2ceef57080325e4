"""Sessions against the running gateway: signing in again replaces the session, a password
change ends the user's other sessions, idle sessions end, expired ones are purged."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import requests

from services.shared.settings import Settings
from tests.support import sign_up_confirmed

PASSWORD = "correct horse battery"


_SETTINGS: list[Settings] = []


@pytest.fixture(autouse=True)
def _outbox(settings: Settings) -> None:
    _SETTINGS[:] = [settings]  # sign_up reads the confirmation link from this platform's outbox


def sign_up(url: str) -> tuple[requests.Session, str]:
    email = f"s-{uuid.uuid4().hex[:10]}@example.com"
    sess = requests.Session()
    info = sign_up_confirmed(sess, url, _SETTINGS[0], email, PASSWORD)
    sess.headers["X-CSRF-Token"] = info["csrf_token"]
    return sess, email


def sign_in(url: str, email: str, password: str = PASSWORD, sess: requests.Session | None = None) -> requests.Session:
    sess = sess or requests.Session()
    r = sess.post(url + "/platform/auth/signin", json={"email": email, "password": password}, timeout=20)
    assert r.status_code == 200, r.text
    sess.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return sess


def profile(url: str, cookie: str) -> int:
    return requests.get(url + "/platform/profile", cookies={"sp_session": cookie}, timeout=20).status_code


def test_signing_in_again_replaces_the_session(gateway_url: str) -> None:
    sess, email = sign_up(gateway_url)
    first = sess.cookies["sp_session"]
    sign_in(gateway_url, email, sess=sess)
    second = sess.cookies["sp_session"]
    assert first != second
    assert profile(gateway_url, first) == 401
    assert profile(gateway_url, second) == 200


def test_password_change_ends_other_sessions(gateway_url: str) -> None:
    a, email = sign_up(gateway_url)
    b = sign_in(gateway_url, email)
    r = a.post(gateway_url + "/platform/profile/password", timeout=20,
               json={"current_password": PASSWORD, "new_password": "a brand new passphrase"})
    assert r.status_code == 204, r.text
    assert profile(gateway_url, b.cookies["sp_session"]) == 401
    assert profile(gateway_url, a.cookies["sp_session"]) == 200


def test_idle_sessions_end_and_expired_ones_are_purged(gateway_url: str, settings: Settings) -> None:
    idle, _ = sign_up(gateway_url)
    expired, _ = sign_up(gateway_url)
    with psycopg.connect(settings.db_conninfo, autocommit=True) as conn:
        user_of = {}
        for name, sess in (("idle", idle), ("expired", expired)):
            user_of[name] = sess.get(gateway_url + "/platform/profile", timeout=20).json()["id"]
        conn.execute("UPDATE gateway.sessions SET last_seen_at = now() - interval '3 days' WHERE user_id = %s",
                     (user_of["idle"],))
        conn.execute("UPDATE gateway.sessions SET expires_at = now() - interval '1 second' WHERE user_id = %s",
                     (user_of["expired"],))
        assert profile(gateway_url, idle.cookies["sp_session"]) == 401
        assert profile(gateway_url, expired.cookies["sp_session"]) == 401
        sign_up(gateway_url)  # making a session purges the dead ones
        left = conn.execute("SELECT count(*) FROM gateway.sessions WHERE user_id = ANY(%s)",
                            (list(user_of.values()),)).fetchone()[0]
    assert left == 0


def test_tokens_with_an_expiry_are_listed_with_it_and_their_last_use(gateway_url: str) -> None:
    sess, _ = sign_up(gateway_url)
    r = sess.post(gateway_url + "/platform/profile/tokens", json={"name": "ci", "expires_in_days": 7}, timeout=20)
    assert r.status_code == 201, r.text
    token = r.json()
    assert token["expires_at"]
    assert requests.get(gateway_url + "/platform/profile", timeout=20,
                        headers={"Authorization": f"Bearer {token['token']}"}).status_code == 200
    listed = sess.get(gateway_url + "/platform/profile/tokens", timeout=20).json()
    assert listed[0]["expires_at"] == token["expires_at"] and listed[0]["last_used_at"]
    r = sess.post(gateway_url + "/platform/profile/tokens", json={"name": "ci", "expires_in_days": 0}, timeout=20)
    assert r.status_code == 400, r.text


def bearer(url: str, token: str) -> int:
    return requests.get(url + "/platform/profile", headers={"Authorization": f"Bearer {token}"}, timeout=20).status_code


def test_password_change_can_revoke_every_access_token(gateway_url: str) -> None:
    from tests.support import wait_for

    sess, _ = sign_up(gateway_url)
    tokens = [sess.post(gateway_url + "/platform/profile/tokens", json={"name": f"t{i}"}, timeout=20).json()["token"]
              for i in range(2)]
    assert all(bearer(gateway_url, t) == 200 for t in tokens)  # known to the gateway's auth cache now
    # A plain password change keeps the tokens working ...
    r = sess.post(gateway_url + "/platform/profile/password", timeout=20,
                  json={"current_password": PASSWORD, "new_password": "second passphrase here"})
    assert r.status_code == 204, r.text
    assert all(bearer(gateway_url, t) == 200 for t in tokens)
    # ... and with revoke_tokens every one of them is refused (the cache forgets them at once)
    r = sess.post(gateway_url + "/platform/profile/password", timeout=20,
                  json={"current_password": "second passphrase here", "new_password": "third passphrase here",
                        "revoke_tokens": True})
    assert r.status_code == 204, r.text
    wait_for("the revoked tokens refused", lambda: all(bearer(gateway_url, t) == 401 for t in tokens), timeout=1)
    assert sess.get(gateway_url + "/platform/profile/tokens", timeout=20).json() == []
    assert sess.get(gateway_url + "/platform/profile", timeout=20).status_code == 200  # this session stays
    r = sess.post(gateway_url + "/platform/profile/password", timeout=20,
                  json={"current_password": "third passphrase here", "new_password": "x" * 9, "revoke_tokens": "maybe"})
    assert r.status_code == 400, r.text
