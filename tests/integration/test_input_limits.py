"""Input limits before work, against the running gateway: bodies above a route's limit are
refused from Content-Length and while streaming (chunked), and bodies that are not JSON
objects are 400s, never 500s."""

from __future__ import annotations

import socket
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=20) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_content_length_above_the_limit_is_refused_before_the_body_is_sent(gateway_url: str, user_token: dict[str, str]) -> None:
    # 100 MB announced, nothing sent: the answer must come without waiting for the body
    status, _ = raw_request(gateway_url, "POST /v1/organizations HTTP/1.1\r\nHost: x\r\n"
                            f"Authorization: Bearer {user_token['token']}\r\nContent-Type: application/json\r\n"
                            "Content-Length: 100000000\r\n")
    assert status == 413
    # sign-in has a smaller limit than the default
    r = requests.post(gateway_url + "/platform/auth/signin", data=b'{"email": "' + b"a" * 20000 + b'"}',
                      headers={"Content-Type": "application/json"}, timeout=20)
    assert r.status_code == 413, r.text


def test_chunked_body_above_the_limit_is_refused_while_streaming(gateway_url: str, user_token: dict[str, str]) -> None:
    sent = {"n": 0}

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):  # 40 x 64 KiB: past the 1 MiB default
            sent["n"] += 1
            yield b"a" * 65536
        yield b'"}'

    r = requests.post(gateway_url + "/v1/organizations", data=chunks(), timeout=20,
                      headers={"Authorization": f"Bearer {user_token['token']}", "Content-Type": "application/json"})
    assert r.status_code == 413, r.text


def post(gateway_url: str, token: str, body: Any, ctype: str = "application/json") -> requests.Response:
    return requests.post(gateway_url + "/v1/organizations", data=body, timeout=20,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})


def test_bodies_that_are_not_json_objects_are_400s(gateway_url: str, user_token: dict[str, str]) -> None:
    t = user_token["token"]
    cases = {
        "deeply nested": b"[" * 100_000 + b"]" * 100_000,
        "deeply nested object": b'{"a":' * 5000 + b"1" + b"}" * 5000,
        "invalid UTF-8": b'{"name": "\xff\xfe"}',
        "a huge integer": b'{"name": ' + b"9" * 10_000 + b"}",
        "not an object": b"[1, 2, 3]",
        "truncated": b'{"name": "acm',
    }
    for what, body in cases.items():
        r = post(gateway_url, t, body)
        assert r.status_code == 400, (what, r.status_code, r.text[:200])
        assert r.json()["message"], what
    r = post(gateway_url, t, b'<org name="x"/>', "application/xml")
    assert r.status_code == 400 and "JSON" in r.json()["message"], r.text
    r = post(gateway_url, t, b"--b\r\n\r\nx\r\n--b--", "multipart/form-data; boundary=b")
    assert r.status_code == 400, r.text
    # and the documented curl form (-d without a content type) still works
    r = post(gateway_url, t, b'{"name": "curl-style"}', "application/x-www-form-urlencoded")
    assert r.status_code == 201, r.text
