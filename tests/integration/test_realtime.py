"""A project's Realtime through its project URL only, driven by the real `@supabase/supabase-js`
/ realtime-js on Node (tests/js/realtime.mjs) against the real platform (edge + realtime
server): for both serializer versions, subscribe, broadcast with `self` and `ack` (vsn 2 sends
and receives broadcasts as binary frames), REST broadcast, presence across two clients; token
refresh and expiry (closed with Supabase's `system` message); another project's key refused
at the edge and at the server itself; private channels allowed and refused by RLS policies on
realtime.messages; the server killed with SIGKILL and the client rejoining by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from services.shared.crypto import internal_token
from services.shared.runner import Platform
from services.shared.settings import Settings
from tests.integration.test_project_auth_storage import DB_PASS, tenant_sql
from tests.integration.test_project_lifecycle import wait_status
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def run_js(scenario: str, config: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    done = subprocess.run(["node", str(ROOT / "tests" / "js" / "realtime.mjs"), scenario],
                          input=json.dumps(config).encode(), cwd=ROOT, capture_output=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, (done.stdout.decode()[-3000:], done.stderr.decode()[-3000:])
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def make_project(http: Any, token: str, name: str) -> dict[str, Any]:
    org = http.post("/v1/organizations", token=token, json={"name": f"{name} org"}).json()["slug"]
    r = http.post("/v1/projects", token=token, json={"name": name, "organization_slug": org,
                                                     "db_pass": DB_PASS, "region": "us-east-1"})
    assert r.status_code == 201, r.text
    ref = r.json()["id"]
    assert wait_status(http, token, ref, {"ACTIVE_HEALTHY", "INIT_FAILED"})["status"] == "ACTIVE_HEALTHY"
    keys = {k["name"]: k["api_key"] for k in http.get(f"/v1/projects/{ref}/api-keys", token=token).json()}
    return {"ref": ref, "token": token, "anon": keys["anon"], "service": keys["service_role"]}


class Http:
    def __init__(self, base: str):
        self.base = base

    def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.base + path, headers=headers, timeout=20, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)


@pytest.fixture(scope="module")
def projects(platform: Platform, rpc: Any, gateway_url: str) -> dict[str, Any]:
    """Two projects (the second one's key must not open the first one's realtime), made once
    for the module."""
    http = Http(gateway_url)
    email = f"rt-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(email, "correct horse battery")
    token = rpc.orgs.issue_token(email, "tests")["token"]
    one = make_project(http, token, "realtime-one")
    two = make_project(http, token, "realtime-two")
    one["jwt_secret"] = rpc.projects.edge_tenant(one["ref"])["jwt_secret"]
    return {"one": one, "two": two, "http": http}


def sign(secret: str, ref: str, role: str, exp_in: int, sub: str | None = None) -> str:
    now = int(time.time())
    claims = {"role": role, "iss": "supabase", "ref": ref, "iat": now, "exp": now + exp_in,
              "sub": sub or str(uuid.uuid4()), "aud": "authenticated"}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.parametrize("vsn", ["1.0.0", "2.0.0"])
def test_broadcast_and_presence_through_the_project_url(projects: dict[str, Any], edge_url: str, vsn: str) -> None:
    one = projects["one"]
    out = run_js("basics", {"url": f"{edge_url}/{one['ref']}", "anon": one["anon"], "vsn": vsn,
                            "tag": uuid.uuid4().hex[:6]})
    assert out.get("error") is None, out
    assert out["subscribeA"]["status"] == "SUBSCRIBED" and out["subscribeB"]["status"] == "SUBSCRIBED", out
    assert out["ack"] == "ok"  # ack: true waits for the server's reply
    assert out["gotAHello"] == {"event": "hello", "payload": {"n": 1, "text": "héllo"}}  # self: true
    assert out["gotBHello"] == out["gotAHello"]
    assert out["sendB"] == "ok"
    assert out["restStatus"] == 202
    # B (self: false) never hears its own message; A hears everything.
    assert out["gotB"] == ["hello", "rest", "http"], out["gotB"]
    assert out["gotA"][:3] == ["hello", "from-b", "rest"], out["gotA"]
    assert out["trackA"] == "ok" and out["trackB"] == "ok" and out["untrackB"] == "ok"
    assert out["stateA"] == ["alice", "bob"]
    assert out["metaAtB"] == [{"name": "Alice", "online_at": 1, "ref": "string"}]
    assert out["stateAfterLeave"] == ["alice"]
    assert out["presenceA"]["joins"] == ["alice", "bob"] and out["presenceA"]["leaves"] == ["bob"]
    assert out["presenceA"]["synced"] is True
    wire = out["wire"]
    if vsn == "2.0.0":  # realtime-js's binary user broadcasts, both ways
        assert wire["binaryOut"] >= 2 and wire["binaryIn"] >= 4, wire
    else:
        assert wire["binaryOut"] == 0 and wire["binaryIn"] == 0, wire


def test_another_projects_key_is_refused(projects: dict[str, Any], edge_url: str, settings: Settings) -> None:
    one, two = projects["one"], projects["two"]
    out = run_js("refused", {"url": f"{edge_url}/{one['ref']}", "anon": one["anon"], "otherAnon": two["anon"],
                             "vsn": "1.0.0", "tag": "x"})
    assert out["subscribe"] != "SUBSCRIBED", out
    # At the edge, and at the server itself (tenant code may reach loopback): 401, no upgrade.
    ws_headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    r = requests.get(f"{edge_url}/{one['ref']}/realtime/v1/websocket?apikey={two['anon']}&vsn=1.0.0",
                     headers=ws_headers, timeout=10)
    assert r.status_code == 401, r.text
    direct = f"http://{settings.realtime_host}:{settings.realtime_port}"
    r = requests.get(f"{direct}/v1/{one['ref']}/websocket?apikey={two['anon']}&vsn=1.0.0", headers=ws_headers,
                     timeout=10)
    assert r.status_code == 401 and r.json()["message"] == "Invalid API key", r.text
    r = requests.post(f"{direct}/v1/{one['ref']}/api/broadcast", headers={"apikey": two["anon"]},
                      json={"messages": [{"topic": "t", "event": "e", "payload": {}}]}, timeout=10)
    assert r.status_code == 401, r.text
    # Internal routes are not reachable through the edge, and need the platform's token.
    r = requests.get(f"{edge_url}/{one['ref']}/realtime/v1/internal/stats", headers={"apikey": one["anon"]},
                     timeout=10)
    assert r.status_code == 404
    assert requests.get(f"{direct}/internal/stats", timeout=10).status_code == 404


def test_token_refresh_and_expiry(projects: dict[str, Any], edge_url: str) -> None:
    one = projects["one"]
    secret, ref = one["jwt_secret"], one["ref"]
    short = sign(secret, ref, "authenticated", 4)
    out = run_js("tokens", {"url": f"{edge_url}/{ref}", "anon": one["anon"], "vsn": "2.0.0",
                            "tag": uuid.uuid4().hex[:6], "shortToken": short,
                            "shortExp": jwt.decode(short, options={"verify_signature": False})["exp"],
                            "longToken": sign(secret, ref, "authenticated", 3600),
                            "expiredToken": sign(secret, ref, "authenticated", -10)})
    assert out.get("error") is None, out
    assert out["joinShort"] == "SUBSCRIBED" and out["joinRefreshing"] == "SUBSCRIBED"
    [system] = out["system"]
    assert system["extension"] == "system" and system["status"] == "error"
    assert system["message"] == "Token has expired N seconds ago" and system["channel"].startswith("exp-")
    assert out["statuses"][-1] == "CLOSED"
    assert out["refreshedAlive"] is True
    assert out["joinExpired"]["status"] == "CHANNEL_ERROR"
    assert "InvalidJWTToken: Token has expired" in out["joinExpired"]["error"], out["joinExpired"]


def test_private_channels_follow_rls_on_realtime_messages(projects: dict[str, Any], edge_url: str,
                                                          settings: Settings) -> None:
    one = projects["one"]
    ref = one["ref"]
    tag = uuid.uuid4().hex[:6]
    user = str(uuid.uuid4())
    allowed, denied = f"team-{tag}:{user}", f"team-{tag}:someone-else"
    # Policies written the Supabase way: a user may read and write the topic named after them.
    tenant_sql(settings, ref, f"""
        CREATE POLICY "own topic read {tag}" ON realtime.messages FOR SELECT TO authenticated
          USING (realtime.topic() = 'team-{tag}:' || auth.uid()::text);
        CREATE POLICY "own topic write {tag}" ON realtime.messages FOR INSERT TO authenticated
          WITH CHECK (realtime.topic() = 'team-{tag}:' || auth.uid()::text);
    """)
    out = run_js("private", {"url": f"{edge_url}/{ref}", "anon": one["anon"], "vsn": "2.0.0",
                             "userToken": sign(one["jwt_secret"], ref, "authenticated", 3600, sub=user),
                             "allowedTopic": allowed, "deniedTopic": denied})
    assert out.get("error") is None, out
    assert out["allowed"]["status"] == "SUBSCRIBED", out
    assert out["send"] == "ok" and out["got"] == ["secret"]
    assert out["denied"]["status"] == "CHANNEL_ERROR"
    assert f"Unauthorized: You do not have permissions to read from this Channel topic: {denied}" in \
        out["denied"]["error"]
    assert out["anonDenied"]["status"] == "CHANNEL_ERROR"  # no policy for anon
    # The checks left no rows behind.
    assert tenant_sql(settings, ref, "SELECT count(*) FROM realtime.messages") == [(0,)]


def test_operator_stats_and_kill9_reconnect(projects: dict[str, Any], edge_url: str, settings: Settings,
                                            platform: Platform) -> None:
    one = projects["one"]
    direct = f"http://{settings.realtime_host}:{settings.realtime_port}"
    proc = subprocess.Popen(["node", str(ROOT / "tests" / "js" / "realtime.mjs"), "reconnect"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"url": f"{edge_url}/{one['ref']}", "anon": one["anon"], "vsn": "2.0.0",
                                     "tag": uuid.uuid4().hex[:6]}).encode())
        proc.stdin.close()
        line = proc.stdout.readline().decode()
        assert json.loads(line) == {"ready": True}, (line, proc.stderr.read().decode() if proc.poll() else "")
        # The operator's view: the project has a client and a channel.
        auth = {"Authorization": f"Bearer {internal_token(settings, 'realtime')}"}
        stats = requests.get(f"{direct}/internal/stats", headers=auth, timeout=10).json()["projects"]
        assert stats[one["ref"]]["clients"] >= 1 and stats[one["ref"]]["channels"] >= 1, stats
        old = platform.procs["realtime-server"]
        os.kill(old.pid, signal.SIGKILL)

        def restarted() -> bool:
            platform.supervise()
            new = platform.procs["realtime-server"]
            if new is old or new.poll() is not None:
                return False
            try:
                return requests.get(f"{direct}/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for("the realtime server restarted by the supervisor", restarted, timeout=30)
        proc.stdin = None  # closed above; communicate must not flush it
        out_raw, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, (out_raw.decode()[-2000:], err.decode()[-2000:])
        out = json.loads(out_raw.decode().strip().splitlines()[-1])
        assert out["got"][:1] == [1] and 2 in out["got"], out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_max_concurrent_users_after_a_patch(projects: dict[str, Any], edge_url: str) -> None:
    two = projects["two"]  # its own project: the limit must not touch the other tests' clients
    r = projects["http"].request("PATCH", f"/v1/projects/{two['ref']}/config/realtime", token=two["token"],
                                 json={"max_concurrent_users": 2})
    assert r.status_code == 204, r.text
    out = run_js("limit", {"url": f"{edge_url}/{two['ref']}", "anon": two["anon"], "vsn": "1.0.0",
                           "tag": uuid.uuid4().hex[:6], "users": 2})
    assert [j["status"] for j in out["joins"]] == ["SUBSCRIBED", "SUBSCRIBED", "CHANNEL_ERROR"], out
    assert "ConnectionRateLimitReached: Too many connected users" in out["joins"][2]["error"]
    r = projects["http"].request("PATCH", f"/v1/projects/{two['ref']}/config/realtime", token=two["token"],
                                 json={"max_concurrent_users": 200})
    assert r.status_code == 204, r.text
