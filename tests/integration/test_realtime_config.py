"""A project's realtime settings end to end through the gateway, against the real processes:
`GET/PATCH /v1/projects/{ref}/config/realtime` and `POST .../shutdown` exactly as the public
spec has them (every /v1 answer is checked against it by the `http` fixture), who may read
and change them, bad input refused with nothing changed, the plan's ceilings, the contract
messages on `realtime.events`, and the dashboard's settings route."""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable, Iterator

import pytest

from services.realtime.config import BOUNDS, DEFAULT
from services.shared import broker
from services.shared.settings import Settings
from tests.integration.test_people import latest_mail_token
from tests.support import wait_for


@pytest.fixture
def realtime_events(settings: Settings) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """A queue bound to everything the realtime service publishes."""
    conn = broker.connect(settings)
    channel = conn.channel()
    name = f"test.realtime.{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=False, auto_delete=False)
    channel.queue_bind(name, broker.declare_exchange(channel, "realtime"), "#")
    seen: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        while (m := channel.basic_get(name, no_ack=True)) is not None:
            seen.append(json.loads(m.body))
        return list(seen)

    yield read
    channel.queue_delete(name)
    conn.close()


def member(http: Any, rpc: Any, settings: Settings, owner_token: str, org: str, role: str) -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    user = rpc.orgs.register_user(email, "correct horse battery")
    r = http.post(f"/platform/organizations/{org}/invitations", token=owner_token, json={"email": email, "role": role})
    assert r.status_code == 201, r.text
    rpc.orgs.accept_invitation(user["id"], latest_mail_token(settings, email))
    return str(rpc.orgs.issue_token(email, "tests")["token"])


@pytest.fixture
def project(http: Any, user_token: dict[str, str]) -> dict[str, Any]:
    tok = user_token["token"]
    org = http.post("/v1/organizations", token=tok, json={"name": f"Realtime {uuid.uuid4().hex[:6]}"}).json()["slug"]
    r = http.post("/v1/projects", token=tok, json={"name": "rt", "organization_slug": org,
                                                   "db_pass": "tenant-password-1", "region": "us-east-1"})
    assert r.status_code == 201, r.text
    ref = r.json()["id"]
    wait_for("project active", lambda: http.get(f"/v1/projects/{ref}", token=tok).json()["status"] == "ACTIVE_HEALTHY",
             timeout=60)
    return {"ref": ref, "org": org, "token": tok, "base": f"/v1/projects/{ref}/config/realtime"}


def test_the_bounds_are_the_public_specs() -> None:
    import json
    from pathlib import Path

    spec = json.loads((Path(__file__).resolve().parents[3] / "shared" / "reference"
                       / "supabase-management-api-v1.json").read_text())
    body = spec["components"]["schemas"]["UpdateRealtimeConfigBody"]["properties"]
    ints = {k: (v["minimum"], v["maximum"]) for k, v in body.items() if v.get("type") == "integer"}
    assert ints == BOUNDS


def test_get_patch_shutdown_as_the_spec_has_them(http: Any, rpc: Any, project: dict[str, Any],
                                                 realtime_events: Callable[[], list[dict[str, Any]]]) -> None:
    base, tok, ref = project["base"], project["token"], project["ref"]
    # A new project answers Supabase's defaults, every field of RealtimeConfigResponse.
    r = http.get(base, token=tok)
    assert r.status_code == 200 and r.json() == DEFAULT.as_dict()

    # PATCH: 204, no body; the change is what GET answers next.
    r = http.request("PATCH", base, token=tok, json={"max_concurrent_users": 3, "presence_enabled": False},
                     headers={"X-Request-Id": "rt-change-1"})
    assert r.status_code == 204 and r.content == b"", r.text
    assert http.get(base, token=tok).json() == {**DEFAULT.as_dict(), "max_concurrent_users": 3,
                                                "presence_enabled": False}

    # The change is published once, as realtime_config_changed, naming who changed what.
    me = rpc.orgs.authenticate_token(tok)["id"]
    changed = wait_for("realtime_config_changed", lambda: [m for m in realtime_events()
                                                            if m["event_type"] == "realtime_config_changed"
                                                            and m["project_ref"] == ref])
    assert changed[0]["payload"]["changes"] == {"max_concurrent_users": 3, "presence_enabled": False}
    assert changed[0]["payload"]["previous"] == {"max_concurrent_users": 200, "presence_enabled": True}
    assert changed[0]["payload"]["changed_by"] == me and changed[0]["correlation_id"] == "rt-change-1"

    # Shutdown: 204, recorded as an event the realtime server acts on.
    r = http.post(f"{base}/shutdown", token=tok)
    assert r.status_code == 204 and r.content == b""
    assert rpc.realtime.realtime_config_row(ref)["shutdowns"] == 1
    wait_for("realtime_shutdown_requested", lambda: [m for m in realtime_events()
                                                     if m["event_type"] == "realtime_shutdown_requested"
                                                     and m["payload"] == {**m["payload"], "ref": ref, "seq": 1}])

    # The dashboard's page data: settings, the plan's ceilings, whether the caller may change them.
    page = http.get(f"/platform/projects/{ref}/realtime/settings", token=tok).json()
    assert page["settings"]["max_concurrent_users"] == 3 and page["plan"] == "free" and page["can_change"] is True
    assert page["ceilings"]["max_concurrent_users"] == 200 and page["shutdowns"] == 1


@pytest.mark.parametrize("body,field", [
    ({"max_concurrent_users": 0}, "max_concurrent_users"),
    ({"max_concurrent_users": 50001}, "max_concurrent_users"),
    ({"max_concurrent_users": "10"}, "max_concurrent_users"),
    ({"max_events_per_second": 1.5}, "max_events_per_second"),
    ({"private_only": "true"}, "private_only"),
    ({"suspend": 1}, "suspend"),
    ({"max_everything": 5}, "max_everything"),
])
def test_bad_input_is_400_with_a_message_and_changes_nothing(http: Any, project: dict[str, Any], body: dict[str, Any],
                                                             field: str) -> None:
    base, tok = project["base"], project["token"]
    r = http.request("PATCH", base, token=tok, json={"connection_pool": 7, **body})
    assert r.status_code == 400 and field in r.json()["message"], r.text
    assert http.get(base, token=tok).json() == DEFAULT.as_dict()


def test_not_json_is_400(http: Any, project: dict[str, Any]) -> None:
    r = http.request("PATCH", project["base"], token=project["token"], data="max_concurrent_users=5",
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["message"]
    assert http.get(project["base"], token=project["token"]).json() == DEFAULT.as_dict()


def test_plan_ceilings(http: Any, project: dict[str, Any]) -> None:
    base, tok, org = project["base"], project["token"], project["org"]
    r = http.request("PATCH", base, token=tok, json={"max_concurrent_users": 201, "connection_pool": 4})
    assert r.status_code == 402, r.text
    assert "max_concurrent_users: the free plan allows at most 200" in r.json()["message"]
    assert http.get(base, token=tok).json() == DEFAULT.as_dict()
    # On pro the ceiling is the plan's own.
    up = http.request("PUT", f"/platform/organizations/{org}/billing/subscription", token=tok, json={"plan": "pro"})
    assert up.status_code == 200, up.text
    assert http.request("PATCH", base, token=tok, json={"max_concurrent_users": 500}).status_code == 204
    r = http.request("PATCH", base, token=tok, json={"max_concurrent_users": 501})
    assert r.status_code == 402 and "pro plan allows at most 500" in r.json()["message"]
    assert http.get(base, token=tok).json()["max_concurrent_users"] == 500


def test_roles_and_strangers(http: Any, rpc: Any, settings: Settings, project: dict[str, Any],
                             user_token: dict[str, str]) -> None:
    base, tok, org, ref = project["base"], project["token"], project["org"], project["ref"]
    for role in ("member", "read_only"):
        t = member(http, rpc, settings, tok, org, role)
        # They may see the settings...
        assert http.get(base, token=t).json() == DEFAULT.as_dict()
        page = http.get(f"/platform/projects/{ref}/realtime/settings", token=t).json()
        assert page["can_change"] is False
        # ...and change nothing.
        r = http.request("PATCH", base, token=t, json={"max_concurrent_users": 5})
        assert r.status_code == 403 and "does not allow" in r.json()["message"], r.text
        assert http.post(f"{base}/shutdown", token=t).status_code == 403
    assert http.get(base, token=tok).json() == DEFAULT.as_dict()
    assert rpc.realtime.realtime_config_row(ref)["shutdowns"] == 0

    # Someone outside the organization: 404 whatever they ask, as for a project that does not exist.
    stranger = rpc.orgs.issue_token(rpc.orgs.register_user(f"s-{uuid.uuid4().hex[:8]}@example.com",
                                                           "correct horse battery")["email"], "t")["token"]
    for method, path, body in (("GET", base, None), ("PATCH", base, {"max_concurrent_users": 5}),
                               ("POST", f"{base}/shutdown", None),
                               ("GET", f"/platform/projects/{ref}/realtime/settings", None)):
        r = http.request(method, path, token=stranger, json=body)
        assert r.status_code == 404, (method, path, r.text)
    # Without a token: 401.
    assert http.get(base).status_code == 401
    assert http.get(base, token=tok).json() == DEFAULT.as_dict()


def admin_token(rpc: Any) -> str:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(email, "correct horse battery")
    rpc.orgs.promote_user(email, {"actor": "tests"})
    return str(rpc.orgs.issue_token(email, "tests")["token"])


def open_socket(edge_url: str, ref: str, anon: str, topic: str) -> Any:
    """A realtime client speaking vsn 1.0.0 to the project's URL, joined to `topic`."""
    import websocket

    url = edge_url.replace("http", "ws", 1) + f"/{ref}/realtime/v1/websocket?apikey={anon}&vsn=1.0.0"
    # A project's first connection wakes the edge's and the server's lookups of it: seconds
    # on a loaded machine, so a generous bound.
    ws = websocket.create_connection(url, timeout=60)
    ws.send(json.dumps({"topic": f"realtime:{topic}", "event": "phx_join", "ref": "1", "join_ref": "1",
                        "payload": {"config": {"broadcast": {"self": True}, "presence": {"key": "ops"}}}}))
    reply = json.loads(ws.recv())
    assert reply["event"] == "phx_reply" and reply["payload"]["status"] == "ok", reply
    return ws


def test_admin_view_and_shutdown_disconnects_the_projects_clients(http: Any, rpc: Any, settings: Settings,
                                                                  project: dict[str, Any], edge_url: str) -> None:
    import websocket

    from services.shared.db import connect

    ref, tok = project["ref"], project["token"]
    anon = next(k["api_key"] for k in http.get(f"/v1/projects/{ref}/api-keys", token=tok).json() if k["name"] == "anon")
    admin = admin_token(rpc)
    slot = f"sp_test_{uuid.uuid4().hex[:8]}"
    ws = open_socket(edge_url, ref, anon, "ops-room")
    tenant = connect(settings, dbname=ref, autocommit=True)
    try:
        tenant.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        tenant.execute("CREATE TABLE IF NOT EXISTS public.wal_noise (id int)")  # some WAL behind the slot

        # Non-admins: 403.
        assert http.get("/platform/admin/realtime", token=tok).status_code == 403
        # The admin sees the client, its channel and the project's slot with its lag.
        def seen() -> Any:
            view = http.get("/platform/admin/realtime", token=admin).json()
            mine = [p for p in view["projects"] if p["ref"] == ref]
            return mine[0] if mine and mine[0]["clients"] >= 1 and mine[0]["slots"] else None
        p = wait_for("the project in the operator view", seen)
        assert any("ops-room" in t for t in p["topics"]) and p["joined_channels"] >= 1
        assert [s["slot_name"] for s in p["slots"]] == [slot] and p["slots"][0]["plugin"] == "pgoutput"
        assert p["slot_lag_bytes"] is not None and p["slot_lag_bytes"] >= 0

        # Shutdown: the server hears it (the feed) and closes the project's sockets.
        assert http.post(f"/v1/projects/{ref}/config/realtime/shutdown", token=tok).status_code == 204

        def closed() -> bool:
            try:
                ws.settimeout(1)
                frame = ws.recv()
                return frame == "" or not ws.connected
            except websocket.WebSocketTimeoutException:
                return False
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                return True
        wait_for("the socket closed by the shutdown", closed, timeout=15)
        # A new client may connect again.
        open_socket(edge_url, ref, anon, "ops-room").close()
    finally:
        ws.close()
        tenant.execute("SELECT pg_drop_replication_slot(%s) FROM pg_replication_slots WHERE slot_name = %s",
                       (slot, slot))
        tenant.close()


def test_dashboard_may_connect_to_the_project_edge_and_nowhere_else(gateway_url: str, settings: Settings) -> None:
    import requests
    from urllib.parse import urlsplit

    csp = requests.get(f"{gateway_url}/project/abcdefghijklmnopqrst/realtime/inspector", timeout=20) \
        .headers["Content-Security-Policy"]
    connect = next(d for d in csp.split(";") if d.strip().startswith("connect-src")).split()[1:]
    edge = urlsplit(settings.edge_public_url).netloc
    assert connect == ["'self'", f"http://{edge}", f"ws://{edge}"]
    assert "script-src 'self';" in csp  # scripts still from this origin only
