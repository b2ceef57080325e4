"""The Studio bridge's proxy on the kubernetes driver (gateway/studio_proxy.py, docs/studio.md).

The gateway's WSGI application (gateway.app.Gateway, the code every gateway process runs) is
called directly, with its real session and Studio stores on PostgreSQL; the services behind it
are small fakes at their RPC port (orgs' role matrix for `database.read`/`database.write`,
projects' membership, the provisioner's `studio_upstream`, the database service's read-only
SQL). Each project's Supabase Studio is a fake HTTP server on loopback that records what it
received and answers as Studio's framing headers would (`X-Frame-Options: DENY`,
`frame-ancestors 'none'`) plus a `Set-Cookie` named like the platform's session cookie."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from werkzeug.test import Client

from gateway import studio_proxy
from gateway.app import Gateway
from gateway.sessions import DDL, SqlSessionStore
from gateway.studio import DDL as STUDIO_DDL
from services.shared.db import drop_database, ensure_database, make_pool
from tests.conftest import make_test_settings

P1, P2, P3 = "a" * 20, "b" * 20, "c" * 20
DASH = "http://dash.studio-test.example:21400"
STUDIO = "http://studio.studio-test.example:21400"
STUDIO_HOST = "studio.studio-test.example:21400"
BIG = 3 * 1024 * 1024  # more than the gateway's MAX_BODY: the proxy streams, it does not buffer


class Remote(Exception):
    """What a nameko RPC proxy raises for a service's expected error."""

    def __init__(self, exc_type: str, value: str):
        super().__init__(value)
        self.exc_type, self.value = exc_type, value


class FakeStudio:
    """One project's Studio: records each request, answers with Studio-like framing headers."""

    def __init__(self, name: str):
        self.name = name
        self.received: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.received.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                       "cookie": self.headers.get("Cookie"), "body_len": len(body),
                                       "body_head": body[:200]})
                if self.path.startswith("/go-elsewhere"):
                    self.send_response(307)
                    self.send_header("Location", f"http://127.0.0.1:{owner.port}/project/default/editor")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                out = json.dumps({"studio": owner.name, "path": self.path, "received": len(body)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.send_header("X-Frame-Options", "DENY")
                self.send_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
                self.send_header("Set-Cookie", "sp_session=from-studio; Path=/; HttpOnly")
                self.send_header("Set-Cookie", "SP_STUDIO=from-studio; Path=/")
                self.send_header("Set-Cookie", "studio_theme=dark; Path=/")
                self.send_header("Set-Cookie", "tossed=1; Domain=studio-test.example; Path=/")
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Services:
    """The gateway's RPC ports, faked: users, organizations' roles, projects, Studio upstreams."""

    def __init__(self, studios: dict[str, FakeStudio]):
        self.users = {u: {"id": u, "email": f"{u}@example.test", "organizations": ["acme"], "disabled": False}
                      for u in ("owner", "reader", "outsider")}
        self.roles = {("owner", "acme"): "owner", ("reader", "acme"): "read_only"}
        self.projects_of = {P1: "acme", P2: "acme", P3: "acme"}
        self.studios = studios
        self.upstream_calls: list[tuple[str, str]] = []
        self.queries: list[tuple[str, str, str, bool]] = []
        svc = self

        class Orgs:
            def get_user(self, user_id: str) -> dict[str, Any]:
                return dict(svc.users[user_id])

            def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
                role = svc.roles.get((user_id, slug))
                if role is None:
                    raise Remote("NotFound", f"organization {slug} not found")
                if action == "database.write" and role == "read_only":
                    raise Remote("Forbidden", "your role (read_only) may not database.write")
                return {"role": role}

        class Projects:
            def get_project(self, user_id: str, ref: str, org_slugs: list[str] | None = None) -> dict[str, Any]:
                org = svc.projects_of.get(ref)
                if org is None or (user_id, org) not in svc.roles:
                    raise Remote("NotFound", f"project {ref} not found")
                return {"ref": ref, "organization_slug": org, "name": ref}

        class Provisioner:
            def studio_upstream(self, ref: str, org: str = "") -> dict[str, Any]:
                svc.upstream_calls.append((ref, org))
                return {"url": svc.studios[ref].url}

        class Database:
            def run_query(self, user_id: str, ref: str, query: str, parameters: Any, read_only: bool) -> list[Any]:
                svc.queries.append((user_id, ref, query, read_only))
                return [{"answered_by": "platform", "read_only": read_only}]

        self.orgs, self.projects, self.provisioner, self.database = Orgs(), Projects(), Provisioner(), Database()


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    settings = make_test_settings("studioproxy").with_overrides(
        provisioner_driver="kubernetes", public_url=DASH, studio_public_url=STUDIO)
    ensure_database(settings)
    pool = make_pool(settings, "gateway", DDL + STUDIO_DDL, max_size=2)
    studios = {P1: FakeStudio("p1"), P2: FakeStudio("p2"), P3: FakeStudio("p3")}
    try:
        yield {"settings": settings, "pool": pool, "studios": studios}
    finally:
        for s in studios.values():
            s.close()
        pool.close()
        drop_database(settings)


@pytest.fixture
def env(stack: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for s in stack["studios"].values():
        s.received.clear()
    with studio_proxy._lock:
        studio_proxy._upstreams.clear()
    services = Services(stack["studios"])
    sessions = SqlSessionStore(stack["pool"], timedelta(hours=1))

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wrappers import Request

        return Gateway(services, sessions, stack["settings"]).handle(Request(environ))(environ, start_response)

    yield {"services": services, "sessions": sessions, "app": app, "studios": stack["studios"],
           "gw": Gateway(services, sessions, stack["settings"])}


def studio_client(env: dict[str, Any], user: str, ref: str) -> Client:
    """A browser that opened Studio for `ref` as `user`: the bridge's code, exchanged on the Studio origin."""
    code = env["gw"].studio.issue(user, ref, f"/project/{ref}/database/sql")
    c = Client(env["app"])
    r = c.get(f"/studio/auth?code={code}", base_url=STUDIO)
    assert r.status_code == 303, r.get_data(as_text=True)
    assert r.headers["Location"] == "/project/default/sql/new"  # Supabase Studio's SQL editor
    assert c.get_cookie("sp_studio", domain="studio.studio-test.example") is not None
    # Credentials a browser could carry that must never reach a tenant's Studio.
    c.set_cookie("sp_session", "dashboard-session-token", domain="studio.studio-test.example")
    c.set_cookie("studio_theme", "light", domain="studio.studio-test.example")
    return c


LEAKS = ("Bearer", "sbp_", "dashboard-session-token", "sp_studio", "sp_session", "csrf")


def assert_clean(received: dict[str, Any], studio_cookie: str) -> None:
    blob = json.dumps(received["headers"])
    for leak in LEAKS + (studio_cookie,):
        assert leak.lower() not in blob.lower(), (leak, received["headers"])


def test_proxied_to_the_projects_studio_clean_both_ways(env: dict[str, Any]) -> None:
    c = studio_client(env, "owner", P1)
    assert env["services"].upstream_calls == [(P1, "")]  # started on the code exchange
    token = c.get_cookie("sp_studio", domain="studio.studio-test.example").value
    r = c.get("/project/default/editor?schema=public", base_url=STUDIO,
              headers={"Authorization": "Bearer sbp_" + "x" * 40, "X-CSRF-Token": "csrf-of-the-dashboard"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.is_streamed
    assert json.loads(r.get_data()) == {"studio": "p1", "path": "/project/default/editor?schema=public", "received": 0}
    (got,) = env["studios"][P1].received
    assert got["method"] == "GET" and got["path"] == "/project/default/editor?schema=public"
    assert got["cookie"] == "studio_theme=light"  # Studio's own cookie only
    assert_clean(got, token)
    assert env["studios"][P2].received == []
    # Framing: only the dashboard's origin may embed it; Studio's DENY is gone.
    assert "X-Frame-Options" not in r.headers
    csp = r.headers["Content-Security-Policy"]
    assert csp == f"default-src 'self'; frame-ancestors {DASH}"
    # No platform cookie from upstream reaches the browser (any case); Studio's own does.
    cookies = r.headers.getlist("Set-Cookie")
    assert cookies == ["studio_theme=dark; Path=/"], cookies
    assert c.get_cookie("sp_studio", domain="studio.studio-test.example").value == token
    assert c.get_cookie("sp_session", domain="studio.studio-test.example").value == "dashboard-session-token"
    # The upstream address is cached: no second RPC for the next request.
    assert env["services"].upstream_calls == [(P1, "")]
    # Redirects to the in-cluster address come back on the Studio origin.
    r = c.get("/go-elsewhere", base_url=STUDIO)
    assert r.status_code == 307 and r.headers["Location"] == f"{STUDIO}/project/default/editor"


def test_writes_stream_their_body_and_need_the_studio_origin(env: dict[str, Any]) -> None:
    c = studio_client(env, "owner", P1)
    body = b"{" + b" " * BIG + b"}"
    # A write without the Studio origin's Origin header (another site's form, a script elsewhere): refused.
    r = c.post("/api/platform/pg-meta/default/tables", base_url=STUDIO, data=body,
               headers={"Content-Type": "application/json"})
    assert r.status_code == 403 and "Origin" in r.get_json()["message"]
    r = c.post("/api/platform/pg-meta/default/tables", base_url=STUDIO, data=body,
               headers={"Content-Type": "application/json", "Origin": DASH})
    assert r.status_code == 403
    assert env["studios"][P1].received == []
    r = c.post("/api/platform/pg-meta/default/tables", base_url=STUDIO, data=body,
               headers={"Content-Type": "application/json", "Origin": STUDIO})
    assert r.status_code == 200, r.get_data(as_text=True)
    (got,) = env["studios"][P1].received
    assert got["method"] == "POST" and got["path"] == "/api/platform/pg-meta/default/tables"
    assert got["body_len"] == len(body)  # all of it, past the gateway's JSON limit: streamed through
    assert got["headers"]["Content-Length"] == str(len(body)) and "Transfer-Encoding" not in got["headers"]
    # A writer's SQL goes to the project's Studio (its pg-meta runs it as the project's login).
    r = c.post("/api/platform/pg-meta/default/query", base_url=STUDIO, json={"query": "create table t (id int)"},
               headers={"Origin": STUDIO})
    assert r.status_code == 200 and r.get_json()["studio"] == "p1"
    assert env["services"].queries == []


def test_read_only_member_reads_but_writes_never_reach_studio(env: dict[str, Any]) -> None:
    c = studio_client(env, "reader", P1)
    upstream = env["studios"][P1]
    assert c.get("/project/default/editor", base_url=STUDIO).status_code == 200
    assert len(upstream.received) == 1
    for method, path in (("POST", "/api/platform/pg-meta/default/tables"),
                         ("PATCH", "/api/platform/pg-meta/default/tables?id=1"),
                         ("DELETE", "/api/platform/pg-meta/default/columns?id=1.2"),
                         ("PUT", "/api/platform/projects/default/settings"),
                         ("POST", "/api/pg-meta/default/query/../tables")):
        r = c.open(path, method=method, base_url=STUDIO, json={"name": "t"}, headers={"Origin": STUDIO})
        assert r.status_code in (403, 404), (method, path, r.status_code)
    assert len(upstream.received) == 1  # none of them reached Studio
    # Read-only SQL: answered by the platform in a read-only transaction, not by Studio's pg-meta.
    for path in ("/api/platform/pg-meta/default/query", "/api/pg-meta/default/query"):
        r = c.post(path, base_url=STUDIO, json={"query": "select 1"}, headers={"Origin": STUDIO})
        assert r.status_code == 200 and r.get_json() == [{"answered_by": "platform", "read_only": True}]
    assert env["services"].queries == [("reader", P1, "select 1", True)] * 2
    assert len(upstream.received) == 1
    r = c.post("/api/platform/pg-meta/default/query", base_url=STUDIO, json={"nope": 1}, headers={"Origin": STUDIO})
    assert r.status_code == 400 and len(env["services"].queries) == 2


def test_strangers_and_other_projects_get_404_and_nothing_reaches_studio(env: dict[str, Any]) -> None:
    svc = env["services"]
    # No Studio cookie (a dashboard session alone, a bearer token): nothing.
    anon = Client(env["app"])
    anon.set_cookie("sp_session", "dashboard-session-token", domain="studio.studio-test.example")
    assert anon.get("/project/default/editor", base_url=STUDIO,
                    headers={"Authorization": "Bearer sbp_" + "x" * 40}).status_code == 401
    # A member of P2 whose Studio cookie is P2's: another project's ref in the path is a 404,
    # and its requests only ever reach P2's Studio.
    c2 = studio_client(env, "owner", P2)
    assert c2.get(f"/project/{P1}/editor", base_url=STUDIO).status_code == 404
    assert c2.get(f"/project/{P1}", base_url=STUDIO).status_code == 404
    assert c2.get("/project/default/editor", base_url=STUDIO).status_code == 200
    assert env["studios"][P1].received == [] and len(env["studios"][P2].received) == 1
    # A member removed from the organization: their next request is a 404, never proxied.
    c3 = studio_client(env, "reader", P3)
    del svc.roles[("reader", "acme")]
    for method in ("GET", "POST"):
        r = c3.open("/api/platform/pg-meta/default/query", method=method, base_url=STUDIO,
                    json={"query": "select 1"}, headers={"Origin": STUDIO})
        assert r.status_code == 404, (method, r.status_code)
    assert env["studios"][P3].received == [] and svc.queries == []
    # The bridge itself refuses strangers: a code is only issued to members (the dashboard
    # route checks projects.get_project first), so an outsider never gets a Studio cookie.
    with pytest.raises(Remote):
        svc.projects.get_project("outsider", P1)


def test_dashboard_may_frame_the_studio_origin_only(env: dict[str, Any], stack: dict[str, Any]) -> None:
    c = Client(env["app"])
    r = c.get("/project/" + P1 + "/studio", base_url=DASH)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert f"frame-src 'self' {STUDIO}" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Frame-Options"] == "DENY"  # the dashboard itself is never framed
    # On the local driver nothing is framed (Studio mode pages on their own origin).
    local = stack["settings"].with_overrides(provisioner_driver="local")
    from gateway.web_routes import frame_sources

    assert frame_sources(local) == ""
    assert studio_proxy.landing(f"/project/{P1}/database/tables/public/t") == "/project/default/editor"


def test_over_real_sockets_bodies_stream_both_ways(env: dict[str, Any]) -> None:
    """The same application behind a real HTTP server (werkzeug's, on loopback): a large upload
    and the answer cross two real connections, with the Studio origin's Host header."""
    import requests
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, env["app"], threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        code = env["gw"].studio.issue("owner", P2, f"/project/{P2}/database")
        s = requests.Session()
        r = s.get(f"{base}/studio/auth?code={code}", headers={"Host": STUDIO_HOST}, allow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["Location"] == "/project/default/editor"
        cookie = r.cookies["sp_studio"]
        body = b"x" * BIG
        r = requests.put(f"{base}/api/platform/storage/default/upload", data=body, timeout=30,
                         headers={"Host": STUDIO_HOST, "Origin": STUDIO, "Cookie": f"sp_studio={cookie}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"studio": "p2", "path": "/api/platform/storage/default/upload", "received": BIG}
        assert "sp_session" not in r.headers.get("Set-Cookie", "") and "X-Frame-Options" not in r.headers
        assert env["studios"][P2].received[-1]["body_len"] == BIG
        assert env["studios"][P1].received == []
    finally:
        server.shutdown()
        server.server_close()
