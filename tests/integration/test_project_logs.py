"""A project's logs (`/v1/projects/{ref}/analytics/endpoints/logs.all`) have what went through
the project edge: one `edge_logs` record per request, and `auth_logs` / `storage_logs` records
for the Auth and Storage APIs; each project sees its own and never another's. Secrets in query
strings are never stored."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from tests.integration.test_project_apis import tenant_sql, two_projects  # noqa: F401 -- fixture
from tests.integration.test_project_auth_storage import set_auth
from tests.support import wait_for


def logs_of(http: Any, tok: str, ref: str, sql: str) -> list[dict[str, Any]]:
    r = http.get(f"/v1/projects/{ref}/analytics/endpoints/logs.all", token=tok, params={"sql": sql})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def test_edge_auth_and_storage_requests_reach_the_projects_logs_only(http: Any, edge_url: str, settings: Any,
                                                                     two_projects: dict[str, Any]) -> None:  # noqa: F811
    a, b, tok = two_projects["a"], two_projects["b"], two_projects["token"]
    ref, base = a["ref"], f"{edge_url}/{a['ref']}"
    tenant_sql(settings, ref, "create table public.crates (id int primary key); insert into public.crates values (7);"
                              "grant select on public.crates to anon;")
    set_auth(http, {"ref": ref, "token": tok}, mailer_autoconfirm=True)
    wait_for("autoconfirm at the edge", lambda: requests.get(f"{base}/auth/v1/settings", headers={"apikey": a["anon"]},
                                                             timeout=10).json().get("mailer_autoconfirm"), timeout=20)
    ids = {k: str(uuid.uuid4()) for k in ("rest", "signup", "login", "storage")}

    # A REST read (the key also in the query string, as realtime and some clients send it) ...
    def read() -> bool:
        r = requests.get(f"{base}/rest/v1/crates?select=id&apikey={a['anon']}", timeout=20,
                         headers={"apikey": a["anon"], "X-Request-Id": ids["rest"]})
        return r.status_code == 200 and r.json() == [{"id": 7}]
    wait_for("the REST read answers", read, timeout=60)
    # ... a sign-up and a sign-in through Auth, and a Storage call.
    email = f"logs-{uuid.uuid4().hex[:8]}@example.com"
    r = requests.post(f"{base}/auth/v1/signup", headers={"apikey": a["anon"], "X-Request-Id": ids["signup"]},
                      json={"email": email, "password": "a long password 1"}, timeout=20)
    assert r.status_code == 200, r.text
    r = requests.post(f"{base}/auth/v1/token?grant_type=password", timeout=20,
                      headers={"apikey": a["anon"], "X-Request-Id": ids["login"]},
                      json={"email": email, "password": "a long password 1"})
    assert r.status_code == 200 and r.json()["access_token"], r.text
    r = requests.get(f"{base}/storage/v1/bucket", headers={"apikey": a["service"], "X-Request-Id": ids["storage"],
                                                           "Authorization": f"Bearer {a['service']}"}, timeout=20)
    assert r.status_code == 200, r.text

    # The edge saves its records about once a second: wait until they are all in the project's logs.
    edge_sql = ("select id, timestamp, event_message, log_attributes['request.path'] as path, "
                "log_attributes['response.status_code'] as status, log_attributes['request_id'] as rid "
                "from edge_logs order by timestamp desc limit 100")

    def edge_records() -> dict[str, dict[str, Any]] | None:
        found = {row["rid"]: row for row in logs_of(http, tok, ref, edge_sql)}
        return found if set(ids.values()) <= set(found) else None
    edge = wait_for("the edge's records in the project's logs", edge_records, timeout=30)
    rest = edge[ids["rest"]]
    assert rest["path"].startswith("/rest/v1/crates?select=id") and rest["status"] == 200
    assert a["anon"] not in str(rest) and "apikey=[redacted]" in rest["path"]  # the key is never stored
    assert edge[ids["login"]]["path"] == "/auth/v1/token?grant_type=password"

    auth = logs_of(http, tok, ref, "select id, event_message, log_attributes['action'] as action, "
                                   "log_attributes['request_id'] as rid, log_attributes['status'] as status "
                                   "from logs where source = 'auth_logs' order by timestamp desc limit 50")
    by_id = {row["rid"]: row for row in auth}
    assert by_id[ids["login"]]["action"] == "login" and by_id[ids["login"]]["status"] == 200
    assert by_id[ids["signup"]]["action"] == "user_signedup"
    storage = logs_of(http, tok, ref, "select id, log_attributes['path'] as path, log_attributes['request_id'] as rid "
                                      "from storage_logs limit 50")
    assert any(row["rid"] == ids["storage"] and row["path"] == "/bucket" for row in storage)

    # The other project of the same organization has none of them.
    other = logs_of(http, tok, b["ref"], "select id, log_attributes['request_id'] as rid, event_message from logs "
                                         "order by timestamp desc limit 1000")
    assert not set(ids.values()) & {row.get("rid") for row in other}
    assert not any(ref in str(row.get("event_message")) for row in other)
