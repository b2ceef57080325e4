"""The project edge's gate for its key-checked APIs (REST, Auth, Storage), over real HTTP to an
in-process edge with a stand-in upstream and a stand-in projects service: the apikey must be
signed with *that* project's JWT secret, the Bearer token's claims reach the upstream, paused
and unknown projects are refused before any upstream runs, CORS as Supabase answers it, host
routing, and answers stream through."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

import jwt
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from gateway.edge.app import Call, Edge, Upstreamed
from services.shared.tenants import Tenants
from services.shared.errors import NotFound
from services.shared.settings import load_settings

A, B = "aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"
SECRETS = {A: "a-secret-of-project-a-long-enough-000000", B: "b-secret-of-project-b-long-enough-000000"}


def key(ref: str, role: str, secret: str | None = None, **extra: Any) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "supabase", "ref": ref, "role": role, "iat": now, "exp": now + 3600, **extra},
                      secret or SECRETS[ref], algorithm="HS256")


class Projects:
    def __init__(self) -> None:
        self.status = {A: "ACTIVE_HEALTHY", B: "ACTIVE_HEALTHY"}
        self.secrets = dict(SECRETS)
        self.calls = 0

    def __call__(self, ref: str) -> dict[str, Any]:
        self.calls += 1
        if ref not in self.status:
            raise NotFound(f"project {ref} not found")
        return {"ref": ref, "status": self.status[ref], "jwt_secret": self.secrets[ref], "anon_key": "x",
                "service_role_key": "y", "db_pass": "p", "authenticator_pass": "q", "postgrest": {}, "auth": {},
                "connection": {}}


class Echo:
    prefix = "rest/v1"
    open_paths = ("/open",)

    @staticmethod
    def keyless(call: Call) -> bool:
        return call.rest.startswith("/public/") and call.request.method == "GET"

    def __init__(self) -> None:
        self.calls: list[Call] = []

    async def open(self, call: Call) -> web.StreamResponse | Upstreamed:
        self.calls.append(call)

        async def body() -> AsyncIterator[bytes]:
            for i in range(50):
                yield b"%d," % i
                await asyncio.sleep(0)

        headers = CIMultiDict({"Content-Type": "text/plain", "Access-Control-Allow-Origin": "https://evil.example"})
        return Upstreamed(status=200, headers=headers, body=body())

    async def close(self) -> None:
        pass


class Open(Echo):
    prefix = "functions/v1"
    key_required = False
    cors = False


def run(scenario: Any, **overrides: Any) -> None:
    async def main() -> None:
        settings = load_settings({}).with_overrides(edge_public_url="http://edge.test", edge_tenant_ttl_s=60.0,
                                                    **overrides)
        projects = Projects()
        # Refreshes not rate-limited here (1 s by default): the test must not wait for it.
        edge = Edge(settings, tenants=Tenants(settings, projects, refresh_interval=0.0))
        rest, fn = Echo(), Open()
        edge.mount(rest)
        edge.mount(fn)
        server = TestServer(edge.web_app())
        await server.start_server()
        try:
            async with ClientSession(str(server.make_url(""))) as http:
                await scenario(http, projects, rest, fn)
        finally:
            await server.close()

    asyncio.run(main())


def test_apikey_must_be_this_projects() -> None:
    async def scenario(http: ClientSession, projects: Projects, rest: Echo, fn: Open) -> None:
        async with http.get(f"/{A}/rest/v1/todos") as r:
            assert r.status == 401 and (await r.json())["message"] == "No API key found in request"
        for bad in (key(B, "anon"), key(B, "service_role"), "nonsense", key(A, "anon", secret="x" * 40),
                    key(A, "anon", exp=int(time.time()) - 10), jwt.encode({"ref": B, "role": "service_role", "exp": int(time.time()) + 60}, SECRETS[A])):
            async with http.get(f"/{A}/rest/v1/todos", headers={"apikey": bad}) as r:
                assert r.status == 401, bad
                assert (await r.json())["message"] == "Invalid API key"
                assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert rest.calls == []
        # The right key, in the header or the query string: through, with its claims.
        async with http.get(f"/{A}/rest/v1/todos", headers={"apikey": key(A, "anon")}) as r:
            assert r.status == 200 and await r.text() == "".join(f"{i}," for i in range(50))
        async with http.get(f"/{A}/rest/v1/todos?apikey={key(A, 'service_role')}") as r:
            assert r.status == 200
        assert [c.role for c in rest.calls[:2]] == ["anon", "service_role"]
        assert all(c.tenant is not None and c.tenant.ref == A for c in rest.calls)
        # An open path (GoTrue's /verify link) needs no key; a key-less upstream sees no tenant.
        async with http.get(f"/{A}/rest/v1/open") as r:
            assert r.status == 200
        async with http.get(f"/{A}/rest/v1/public/x") as r:  # keyless(call) said so
            assert r.status == 200
        async with http.post(f"/{A}/rest/v1/public/x") as r:  # ...for GET only
            assert r.status == 401
        async with http.get(f"/{A}/functions/v1/hello") as r:
            # Functions answer CORS themselves (as on Supabase): the edge leaves theirs alone.
            assert r.status == 200 and r.headers.getall("Access-Control-Allow-Origin") == ["https://evil.example"]
        assert fn.calls[0].tenant is None
    run(scenario)


def test_bearer_claims_reach_the_upstream() -> None:
    async def scenario(http: ClientSession, projects: Projects, rest: Echo, fn: Open) -> None:
        user = key(A, "authenticated", sub="u-1", aud="authenticated")
        hdr = {"apikey": key(A, "anon")}
        async with http.get(f"/{A}/rest/v1/t", headers={**hdr, "Authorization": f"Bearer {user}"}) as r:
            assert r.status == 200
        expired = key(A, "authenticated", sub="u-2", exp=int(time.time()) - 5)
        async with http.get(f"/{A}/rest/v1/t", headers={**hdr, "Authorization": f"Bearer {expired}"}) as r:
            assert r.status == 200  # the API behind decides (PostgREST answers 401 JWT expired)
        other = key(B, "authenticated", sub="u-3")
        async with http.get(f"/{A}/rest/v1/t", headers={**hdr, "Authorization": f"Bearer {other}"}) as r:
            assert r.status == 200
        first, second, third = rest.calls
        assert first.role == "authenticated" and first.claims["sub"] == "u-1" and first.jwt_error is None
        assert first.bearer == user and first.apikey_claims["role"] == "anon"
        assert second.role == "anon" and second.jwt_error == "JWT expired"
        assert third.role == "anon" and third.jwt_error is not None
        # The edge forwards the tenant's own credentials to the upstream, never the platform's.
        assert first.headers["apikey"] == hdr["apikey"] and first.headers["Authorization"] == f"Bearer {user}"
    run(scenario)


def test_paused_unknown_and_rotated() -> None:
    async def scenario(http: ClientSession, projects: Projects, rest: Echo, fn: Open) -> None:
        hdr = {"apikey": key(A, "anon")}
        async with http.get(f"/{A}/rest/v1/t", headers=hdr) as r:
            assert r.status == 200
        # Rotation: a key of the new secret works at once (one refresh), the old one no longer.
        projects.secrets[A] = "rotated-secret-of-project-a-0000000000000"
        async with http.get(f"/{A}/rest/v1/t", headers={"apikey": key(A, "anon", secret=projects.secrets[A])}) as r:
            assert r.status == 200
        async with http.get(f"/{A}/rest/v1/t", headers=hdr) as r:
            assert r.status == 401
        # A made-up ref: 404, looked up once and remembered (no RPC flood).
        calls = projects.calls
        for _ in range(5):
            async with http.get(f"/{'z' * 20}/rest/v1/t", headers=hdr) as r:
                assert r.status == 404
        assert projects.calls == calls + 1
        assert len(rest.calls) == 2
    run(scenario)

    async def paused(http: ClientSession, projects: Projects, rest: Echo, fn: Open) -> None:
        projects.status[A] = "INACTIVE"
        async with http.get(f"/{A}/rest/v1/t", headers={"apikey": key(A, "anon")}) as r:
            assert r.status == 503 and "paused" in (await r.json())["message"]
        assert rest.calls == []
    run(paused)


def test_cors_as_supabase() -> None:
    async def scenario(http: ClientSession, projects: Projects, rest: Echo, fn: Open) -> None:
        async with http.options(f"/{A}/rest/v1/todos", headers={
                "Origin": "https://app.example", "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "apikey, authorization, x-client-info, prefer"}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
            assert r.headers["Access-Control-Allow-Headers"] == "apikey, authorization, x-client-info, prefer"
        assert rest.calls == []  # no key needed for a preflight, and no upstream reached
        async with http.get(f"/{A}/rest/v1/t", headers={"apikey": key(A, "anon"), "Origin": "https://app.example"}) as r:
            # The upstream's own CORS headers are replaced by the edge's.
            assert r.headers.getall("Access-Control-Allow-Origin") == ["*"]
            assert "Content-Range" in r.headers["Access-Control-Expose-Headers"]
    run(scenario)


def test_host_routing_reaches_the_same_gate() -> None:
    async def scenario(http: ClientSession, projects: Projects, rest: Echo, fn: Open) -> None:
        async with http.get("/rest/v1/t", headers={"Host": f"{A}.supa.test", "apikey": key(A, "anon")}) as r:
            assert r.status == 200
        async with http.get("/rest/v1/t", headers={"Host": f"{A}.supa.test", "apikey": key(B, "anon")}) as r:
            assert r.status == 401
        assert [c.ref for c in rest.calls] == [A]
    run(scenario, edge_domain="supa.test")


@pytest.mark.parametrize("status", ["COMING_UP", "GOING_DOWN", "RESTORING"])
def test_projects_not_live_run_nothing(status: str) -> None:
    async def scenario(http: ClientSession, projects: Projects, rest: Echo, fn: Open) -> None:
        projects.status[A] = status
        async with http.get(f"/{A}/rest/v1/t", headers={"apikey": key(A, "anon")}) as r:
            assert r.status == 503
        assert rest.calls == []
    run(scenario)
