"""Abuse limits against real processes: orgs and two gateway processes sharing one database,
with low limits. Counts are shared (PostgreSQL), past a limit the answer is 429 with
Retry-After, and an unknown email costs the same argon2 work as a known one."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any, Iterator

import pytest
import requests

from services.shared.db import bootstrap, drop_database
from services.shared.rabbitadmin import RabbitAdmin
from services.shared.runner import Platform
from tests.conftest import ARTIFACTS, free_port, make_test_settings
from tests.support import sign_up_confirmed

PER_IP = 6
PER_ACCOUNT = 4
_AMQP: dict[str, str] = {}  # the module platform's broker address, for the RPC test
_SETTINGS: list[Any] = []  # the module platform's settings (its mail outbox)


@pytest.fixture(scope="module")
def gateways() -> Iterator[list[str]]:
    s = make_test_settings("rl").with_overrides(
        rate_limit_per_ip=PER_IP, rate_limit_per_account=PER_ACCOUNT, rate_limit_window_s=600,
        # argon2 costly enough that skipping it would show (about 50 ms here)
        password_hash_time_cost=2, password_hash_memory_kib=65536)
    admin = RabbitAdmin(s)
    admin.create_vhost(s.amqp_vhost)
    bootstrap(s)
    logs = ARTIFACTS / "logs" / s.db_name
    first = Platform(s, log_dir=logs, only=["orgs", "gateway"])
    # the second gateway sits behind a trusted reverse proxy on loopback (the test itself)
    s2 = s.with_overrides(gateway_port=free_port(), gateway_trusted_proxies="127.0.0.1, ::1")
    second = Platform(s2, log_dir=logs / "second", only=["gateway"])
    try:
        first.start()
        second.start()
        _AMQP["uri"] = s.amqp_uri
        _SETTINGS[:] = [s]
        yield [f"http://127.0.0.1:{s.gateway_port}", f"http://127.0.0.1:{s2.gateway_port}"]
    finally:
        second.stop()
        first.stop()
        drop_database(s)
        admin.delete_vhost(s.amqp_vhost)


def post(url: str, path: str, **kw: Any) -> requests.Response:
    return requests.post(url + path, timeout=30, **kw)


def signup(url: str) -> tuple[requests.Session, str]:
    email = f"u-{uuid.uuid4().hex[:10]}@example.com"
    sess = requests.Session()
    info = sign_up_confirmed(sess, url, _SETTINGS[0], email, "correct horse battery")
    sess.headers["X-CSRF-Token"] = info["csrf_token"]
    return sess, email


def test_sign_in_limit_per_account_is_shared_by_gateway_processes(gateways: list[str]) -> None:
    _, email = signup(gateways[0])
    codes = []
    for i in range(PER_ACCOUNT + 1):  # alternate processes: each sees only half the attempts
        r = post(gateways[i % 2], "/platform/auth/signin", json={"email": email, "password": "wrong password!"})
        codes.append(r.status_code)
    assert codes == [401] * PER_ACCOUNT + [429], codes
    assert 0 < int(r.headers["Retry-After"]) <= 600
    assert "too many" in r.json()["message"]
    # the right password is refused too while the account is over its limit: no oracle
    r = post(gateways[0], "/platform/auth/signin", json={"email": email, "password": "correct horse battery"})
    assert r.status_code == 429


def test_failed_tokens_per_ip_then_429_without_asking_orgs(gateways: list[str]) -> None:
    codes = []
    for i in range(PER_IP + 2):
        r = requests.get(gateways[i % 2] + "/platform/profile", timeout=30,
                         headers={"Authorization": f"Bearer sbp_{uuid.uuid4().hex}{'0' * 8}"})
        codes.append(r.status_code)
    assert codes[:PER_IP] == [401] * PER_IP and codes[PER_IP:] == [429, 429], codes
    assert int(r.headers["Retry-After"]) > 0
    # sessions (cookies) are not bearer tokens: a signed-in user from that IP still works
    sess, _ = signup(gateways[1])
    assert sess.get(gateways[1] + "/platform/profile", timeout=30).status_code == 200


def bad_token(url: str, forwarded_for: str | None = None) -> int:
    headers = {"Authorization": f"Bearer sbp_{uuid.uuid4().hex}{'0' * 8}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return requests.get(url + "/platform/profile", headers=headers, timeout=30).status_code


def test_forwarded_for_is_the_client_only_behind_a_trusted_proxy(gateways: list[str]) -> None:
    direct, proxied = gateways
    client = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    other = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    # Behind the trusted proxy, each client address has its own bucket, and what a client
    # puts in the header itself (left of what the proxy appended) changes nothing.
    codes = [bad_token(proxied, f"10.{i}.{i}.{i}, {client}") for i in range(PER_IP)]
    assert codes == [401] * PER_IP, codes
    assert bad_token(proxied, f"192.0.2.77, {client}") == 429
    assert bad_token(proxied, client) == 429
    assert bad_token(proxied, other) == 401  # another client of the proxy is not blocked
    # Straight to a gateway that trusts no proxy, a spoofed header is ignored: every attempt
    # counts against the peer address, whatever address each one claims.
    codes = [bad_token(direct, f"198.18.{i}.{uuid.uuid4().int % 250 + 1}") for i in range(PER_IP + 1)]
    assert codes[-1] == 429 and set(codes) <= {401, 429}, codes


def test_password_changes_and_invitations_are_limited_per_account(gateways: list[str]) -> None:
    sess, _ = signup(gateways[0])
    codes = [sess.post(gateways[0] + "/platform/profile/password", timeout=30,
                       json={"current_password": "not it at all", "new_password": "another long one"}).status_code
             for _ in range(PER_ACCOUNT + 1)]
    assert codes == [400] * PER_ACCOUNT + [429], codes

    sess, _ = signup(gateways[1])
    org = sess.post(gateways[1] + "/v1/organizations", json={"name": "limits"}, timeout=30)
    assert org.status_code == 201, org.text
    slug = org.json()["id"]
    codes = [sess.post(gateways[i % 2] + f"/platform/organizations/{slug}/invitations", timeout=30,
                       json={"email": f"i{i}-{uuid.uuid4().hex[:6]}@example.com", "role": "member"}).status_code
             for i in range(PER_ACCOUNT + 1)]
    assert codes == [201] * PER_ACCOUNT + [429], codes


def test_sign_up_limit_per_ip(gateways: list[str]) -> None:
    # the earlier tests signed up 4 users from this IP; the limit is PER_IP per window
    codes = []
    for i in range(PER_IP + 1):
        r = post(gateways[i % 2], "/platform/auth/signup",
                 json={"email": f"s-{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse battery"})
        codes.append(r.status_code)
        if r.status_code == 429:
            break
    assert codes[-1] == 429 and set(codes[:-1]) == {202}, codes


def test_unknown_email_costs_the_same_as_a_known_one(gateways: list[str]) -> None:
    from nameko.standalone.rpc import ClusterRpcProxy

    # straight to orgs over RPC (the gateway's limits would get in the way of 2 x 7 attempts)
    with ClusterRpcProxy({"AMQP_URI": _AMQP["uri"]}, timeout=30) as rpc:
        email = f"t-{uuid.uuid4().hex[:10]}@example.com"
        rpc.orgs.register_user(email, "correct horse battery")

        def timed(address: str) -> float:
            t0 = time.perf_counter()
            try:
                rpc.orgs.authenticate_password(address, "wrong password!")
            except Exception as e:  # noqa: BLE001
                assert getattr(e, "exc_type", None) == "Unauthorized"
            return time.perf_counter() - t0

        timed(email), timed("nobody@example.com")  # warm both paths
        known_t, unknown_t = [], []
        for _ in range(9):  # interleaved, so the machine's load drifts over both alike
            known_t.append(timed(email))
            unknown_t.append(timed(f"n-{uuid.uuid4().hex[:8]}@example.com"))
        known, unknown = statistics.median(known_t), statistics.median(unknown_t)
    assert known > 0.01, known  # argon2 really ran
    # without the dummy hash the ratio is about 0.01 (5 ms against 430 ms); a loaded machine
    # makes argon2's time vary by 2x between calls
    assert 0.33 < unknown / known < 3.0, (known, unknown)



def test_sign_up_with_a_taken_address_costs_the_same_as_a_new_one(gateways: list[str]) -> None:
    from nameko.standalone.rpc import ClusterRpcProxy

    # straight to orgs over RPC, as above: the sign-up limits would stop 2 x 9 attempts
    with ClusterRpcProxy({"AMQP_URI": _AMQP["uri"]}, timeout=30) as rpc:
        taken = f"k-{uuid.uuid4().hex[:10]}@example.com"
        rpc.orgs.register_user(taken, "correct horse battery")

        def timed(address: str) -> float:
            t0 = time.perf_counter()
            assert rpc.orgs.sign_up(address, "another long password") is None
            return time.perf_counter() - t0

        timed(taken), timed(f"w-{uuid.uuid4().hex[:8]}@example.com")  # warm both paths
        taken_t, new_t = [], []
        for _ in range(9):
            taken_t.append(timed(taken))
            new_t.append(timed(f"n-{uuid.uuid4().hex[:8]}@example.com"))
        taken_m, new_m = statistics.median(taken_t), statistics.median(new_t)
    assert new_m > 0.01, new_m  # argon2 really ran
    assert 0.33 < taken_m / new_m < 3.0, (taken_m, new_m)
