"""The project edge's rules without a network: routing (path and host), what is stripped on
the way in and dropped on the way out, the project URL, and the path rule it shares with the
gateway. (Against the real processes: tests/integration/test_functions_sandbox.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.edge.app import Edge, clean_request_headers, clean_response_headers
from gateway.paths import unsafe_path
from services.shared.settings import load_settings

REF = "abcdefghijklmnopqrst"


class Up:
    def __init__(self, prefix: str):
        self.prefix = prefix

    async def open(self, call: Any) -> Any:
        raise AssertionError("not called here")

    async def close(self) -> None:
        pass


def edge(**overrides: Any) -> Edge:
    e = Edge(load_settings({}).with_overrides(edge_public_url="https://api.example.test", **overrides))
    e.mount(Up("functions/v1"))
    e.mount(Up("rest/v1"))
    return e


@pytest.mark.parametrize("path,host,expected", [
    (f"/{REF}/functions/v1/hello", "api.example.test", (REF, "functions/v1", "/hello", "api.example.test")),
    (f"/{REF}/functions/v1/hello/a/b?x=1", "x", (REF, "functions/v1", "/hello/a/b", "api.example.test")),
    (f"/{REF}/rest/v1/todos", "x", (REF, "rest/v1", "/todos", "api.example.test")),
    (f"/{REF}/functions/v1", "x", (REF, "functions/v1", "", "api.example.test")),
    (f"/{REF}/functions/v10/hello", "x", None),  # a prefix is a whole segment
    (f"/{REF}/status", "x", None),
    ("/status", "x", None),
    ("/NOTAREFNOTAREFNOTAREF/functions/v1/x", "x", None),
])
def test_path_routing(path: str, host: str, expected: Any) -> None:
    found = edge().route(make_mocked_request("GET", path, headers={"Host": host}))
    got = (found[0], found[1].prefix, found[2], found[3]) if found else None
    assert got == expected


def test_host_routing_when_a_domain_is_set() -> None:
    e = edge(edge_domain="supa.example.test")
    found = e.route(make_mocked_request("GET", "/functions/v1/hello", headers={"Host": f"{REF}.supa.example.test:8443"}))
    assert found is not None and (found[0], found[1].prefix, found[2], found[3]) == (
        REF, "functions/v1", "/hello", f"{REF}.supa.example.test:8443")
    # Another host still routes by path.
    found = e.route(make_mocked_request("GET", f"/{REF}/functions/v1/x", headers={"Host": "127.0.0.1:8082"}))
    assert found is not None and found[0] == REF
    assert e.route(make_mocked_request("GET", "/functions/v1/x", headers={"Host": "evil.supa.example.test"})) is None


def test_project_urls() -> None:
    s = load_settings({}).with_overrides(edge_public_url="https://api.example.test/")
    assert s.project_api_url(REF) == f"https://api.example.test/{REF}"
    s = s.with_overrides(edge_public_url="https://edge.example.test:8443", edge_domain="supa.example.test")
    assert s.project_api_url(REF) == f"https://{REF}.supa.example.test:8443"


def test_platform_credentials_are_stripped_on_the_way_in() -> None:
    inbound = CIMultiDictProxy(CIMultiDict([
        ("Cookie", "sp_session=s; theirs=1"), ("Authorization", "Bearer sbp_" + "a" * 40), ("apikey", "sbp_" + "b" * 40),
        ("X-CSRF-Token", "t"), ("X-Forwarded-Host", "evil"), ("Forwarded", "for=evil"), ("Connection", "close"),
        ("Proxy-Authorization", "Basic x"), ("Content-Type", "application/json"), ("X-Client-Info", "supabase-js")]))
    out = clean_request_headers(inbound, forwarded_host="api.example.test", forwarded_proto="https", peer="203.0.113.9")
    assert dict(out) == {"Content-Type": "application/json", "X-Client-Info": "supabase-js",
                         "X-Forwarded-Host": "api.example.test", "X-Forwarded-Proto": "https",
                         "X-Forwarded-For": "203.0.113.9"}
    # A project's own JWT is the tenant's: it goes through.
    keep = clean_request_headers(CIMultiDictProxy(CIMultiDict([("Authorization", "Bearer eyJhbGciOi.x.y"),
                                                              ("apikey", "eyJhbGciOi.x.y")])),
                                 forwarded_host="h", forwarded_proto="https", peer=None)
    assert keep["Authorization"] == "Bearer eyJhbGciOi.x.y" and keep["apikey"] == "eyJhbGciOi.x.y"


def test_platform_cookies_are_dropped_on_the_way_out() -> None:
    upstream = CIMultiDict([("Set-Cookie", "sp_session=planted; Path=/"), ("Set-Cookie", "__Host-sp_session=x"),
                            ("Set-Cookie", "SP_Other=y"), ("Set-Cookie", "theirs=1; Path=/"),
                            ("Set-Cookie", "mysp_session=fine"), ("Transfer-Encoding", "chunked"),
                            ("Content-Type", "text/plain")])
    out = clean_response_headers(upstream)
    assert out.getall("Set-Cookie") == ["theirs=1; Path=/", "mysp_session=fine"]
    assert "Transfer-Encoding" not in out and out["Content-Type"] == "text/plain"


@pytest.mark.parametrize("path,why", [
    ("/a/../status", "'.' and '..' path segments are not allowed"),
    ("/a/./b", "'.' and '..' path segments are not allowed"),
    ("/a/%2e%2e/b", "'.' and '..' path segments are not allowed"),
    ("/a/%2E%2e/b", "'.' and '..' path segments are not allowed"),
    ("/a/.%2E", "'.' and '..' path segments are not allowed"),
    ("/a%2fb", "encoded '/', '\\' or NUL characters are not allowed in request paths"),
    ("/a%5Cb", "encoded '/', '\\' or NUL characters are not allowed in request paths"),
    ("/a%00b", "encoded '/', '\\' or NUL characters are not allowed in request paths"),
    ("/a\\..\\b", "backslashes are not allowed in request paths"),
    ("/%252e%252e/b", "double-encoded characters ('%25') are not allowed in request paths"),
])
def test_unsafe_paths(path: str, why: str) -> None:
    assert unsafe_path(path) == why


@pytest.mark.parametrize("path", ["/", "/v1/projects/abc", f"/{REF}/functions/v1/hello-world_2", "/a/...b/c",
                                  "/a/b.c/d", "/a?x=../..", "/a/%20b"])
def test_safe_paths(path: str) -> None:
    assert unsafe_path(path) is None
