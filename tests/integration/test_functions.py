"""Edge functions end to end, against the real processes and real Deno: deploy through the
multipart Management API, invoke through the project's API URL on the project edge with JWT
verification, secrets, redeploy and rollback, logs, usage events on the broker, limits,
delete. (What a function cannot reach: tests/integration/test_functions_sandbox.py.)"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import time
import uuid
from typing import Any, Iterator

import pytest
import requests

from services.shared import broker
from services.shared.settings import Settings
from tests.support import wait_for

HELLO = """
const greeting = Deno.env.get("GREETING") ?? "hello";
Deno.serve(async (req: Request): Promise<Response> => {
  const { name } = await req.json().catch(() => ({ name: "world" }));
  console.log(`greeting ${name}`);
  console.error("an error line");
  return new Response(JSON.stringify({ message: `${greeting} ${name}`, url: Deno.env.get("SUPABASE_URL") }),
                      { headers: { "Content-Type": "application/json" } });
});
"""


@pytest.fixture
def projects(http: Any, user_token: dict[str, str]) -> dict[str, Any]:
    """Two projects of one organization, and their anon keys."""
    tok = user_token["token"]
    org = http.post("/v1/organizations", token=tok, json={"name": "Edge Org"}).json()["slug"]
    out: dict[str, Any] = {"token": tok, "org": org}
    for name in ("a", "b"):
        r = http.post("/v1/projects", token=tok, json={"name": f"edge-{name}", "organization_slug": org,
                                                       "db_pass": "tenant-password-1", "region": "us-east-1"})
        assert r.status_code == 201, r.text
        ref = r.json()["id"]
        keys = http.get(f"/v1/projects/{ref}/api-keys", token=tok).json()
        out[name] = {"ref": ref, "anon": next(k["api_key"] for k in keys if k["name"] == "anon")}
    return out


def deploy(http: Any, token: str, ref: str, slug: str, source: str, **meta: Any) -> requests.Response:
    metadata = {"entrypoint_path": "index.ts", "name": slug, **meta}
    # File parts first, metadata last: the API must not depend on part order.
    files = [("file", (f"supabase/functions/{slug}/index.ts", source.encode(), "application/typescript")),
             ("file", (f"supabase/functions/{slug}/deno.json", b"{}", "application/json")),
             ("metadata", (None, json.dumps(metadata), "application/json"))]
    return http.post(f"/v1/projects/{ref}/functions/deploy?slug={slug}", token=token, files=files)


def invoke(edge_url: str, ref: str, slug: str, key: str | None = None, **kw: Any) -> requests.Response:
    """POST <project URL>/functions/v1/<slug>, the project URL being <edge>/<ref>."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kw.pop("headers", {}))
    kw.setdefault("timeout", 60)
    method = kw.pop("method", "POST")
    return requests.request(method, f"{edge_url}/{ref}/functions/v1/{slug}", headers=headers, **kw)


def invoke_after_change(edge_url: str, ref: str, slug: str, key: str | None, done: Any, **kw: Any) -> requests.Response:
    """Invoke until `done(response)`: the runtime drops a cached function, secret or setting
    when the store's notification reaches its listener, i.e. just after the change commits
    (docs/functions.md: freshness), so the first call after a change may still see the old one.
    Bounded: a change that never takes effect fails here."""
    # (A list: a 4xx Response is falsy.)
    return wait_for(f"{slug} to reflect the change", lambda: (lambda r: [r] if done(r) else None)(
        invoke(edge_url, ref, slug, key, **kw)), timeout=10.0, interval=0.05)[0]


def bound_queue(settings: Settings, producer: str, event: str) -> Iterator[Any]:
    """A queue bound to <producer>.events/<event>: what metering receives."""
    conn = broker.connect(settings)
    ch = conn.channel()
    broker.declare_exchange(ch, producer)
    queue = f"test.{event}.{uuid.uuid4().hex[:8]}"
    ch.queue_declare(queue, auto_delete=True)
    ch.queue_bind(queue, broker.exchange_name(producer), event)

    def drain() -> list[dict[str, Any]]:
        out = []
        while (m := ch.basic_get(queue, no_ack=True)) is not None:
            out.append(json.loads(m.body))
        return out

    yield drain
    conn.close()


@pytest.fixture
def invoked_events(settings: Settings, platform: Any) -> Iterator[Any]:
    yield from bound_queue(settings, "functions", "function_invoked")


@pytest.fixture
def usage_batches(settings: Settings, platform: Any) -> Iterator[Any]:
    """The usage batches the gateway and the project edge send (api_usage_recorded)."""
    yield from bound_queue(settings, "gateway", "api_usage_recorded")


def test_deploy_invoke_secrets_redeploy_logs_delete(http: Any, edge_url: str, projects: dict[str, Any],
                                                     invoked_events: Any, usage_batches: Any) -> None:
    tok, a, b = projects["token"], projects["a"], projects["b"]
    ref = a["ref"]

    # Deploy a TypeScript function through the multipart API.
    r = deploy(http, tok, ref, "hello", HELLO)
    assert r.status_code == 201, r.text
    fn = r.json()
    assert fn["slug"] == "hello" and fn["version"] == 1 and fn["status"] == "ACTIVE" and fn["verify_jwt"] is True
    # As Supabase answers: a file:// URL under the deployment's folder.
    assert fn["entrypoint_path"] == (f"file:///tmp/user_fn_{ref}_{fn['id']}_1/source/"
                                     "supabase/functions/hello/index.ts")
    assert isinstance(fn["created_at"], int) and fn["created_at"] > 1_600_000_000_000  # epoch ms
    assert [f["slug"] for f in http.get(f"/v1/projects/{ref}/functions", token=tok).json()] == ["hello"]

    # Invoke through the project's API URL with the anon key: 200 and the function's output.
    r = invoke(edge_url, ref, "hello", a["anon"], json={"name": "Ada"})
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "hello Ada", "url": f"{edge_url}/{ref}"}
    request_id = r.headers["X-Request-Id"]

    # Without a key, with a malformed one, with another project's key: 401, and the function does not run.
    for key in (None, "not-a-jwt", b["anon"]):
        r = invoke(edge_url, ref, "hello", key, json={"name": "Mallory"})
        assert r.status_code == 401, (key, r.text)
        assert "Mallory" not in r.text
    # A function that does not exist (in this project) is a 404, whatever the key.
    assert invoke(edge_url, b["ref"], "hello", b["anon"]).status_code == 404

    # Secrets: set one; the listing shows its digest, never the value; the function reads it.
    r = http.post(f"/v1/projects/{ref}/secrets", token=tok, json=[{"name": "GREETING", "value": "bonjour"}])
    assert r.status_code == 201, r.text
    listed = http.get(f"/v1/projects/{ref}/secrets", token=tok).json()
    assert [s["name"] for s in listed] == ["GREETING"]
    assert listed[0]["value"] == hashlib.sha256(b"bonjour").hexdigest()
    assert "bonjour" not in json.dumps(listed)
    r = invoke_after_change(edge_url, ref, "hello", a["anon"], lambda r: "bonjour" in r.text, json={"name": "Ada"})
    assert r.json()["message"] == "bonjour Ada"
    bad = http.post(f"/v1/projects/{ref}/secrets", token=tok, json=[{"name": "SUPABASE_URL", "value": "x"}])
    assert bad.status_code == 400 and "reserved" in bad.json()["message"]

    # Redeploy: the version goes up and the new code answers.
    r = deploy(http, tok, ref, "hello", "Deno.serve(() => new Response('v2 here'))")
    assert r.status_code == 201 and r.json()["version"] == 2
    assert invoke_after_change(edge_url, ref, "hello", a["anon"], lambda r: r.text == "v2 here").text == "v2 here"
    assert http.get(f"/v1/projects/{ref}/functions/hello", token=tok).json()["version"] == 2

    # Roll back (platform route): version 1's code answers again.
    r = http.post(f"/platform/projects/{ref}/functions/hello/rollback", token=tok, json={})
    assert r.status_code == 200 and r.json()["version"] == 1, r.text
    assert invoke_after_change(edge_url, ref, "hello", a["anon"], lambda r: "Bo" in r.text,
                               json={"name": "Bo"}).json()["message"] == "bonjour Bo"
    versions = http.get(f"/platform/projects/{ref}/functions/hello/versions", token=tok).json()
    assert [(v["version"], v["active"]) for v in versions] == [(2, False), (1, True)]

    # Logs of the first invocation: its record and its console lines, by request id and level.
    def logs(**q: Any) -> list[dict[str, Any]]:
        r = http.get(f"/platform/projects/{ref}/functions/hello/logs", token=tok, params=q)
        assert r.status_code == 200, r.text
        return list(r.json())

    lines = wait_for("the invocation's log lines", lambda: [x for x in logs(request_id=request_id) if x["kind"] == "log"] and logs(request_id=request_id))
    assert any(x["kind"] == "invocation" and x["status"] == 200 and x["duration_ms"] > 0 for x in lines)
    assert any(x["kind"] == "log" and x["message"] == "greeting Ada" and x["level"] == "info" for x in lines)
    errors = logs(level="error", kind="log")
    assert errors and all(x["level"] == "error" for x in errors)
    refused = logs(kind="invocation", level="warn")
    assert sum(1 for x in refused if x["status"] == 401) >= 3
    assert logs(since=int(time.time() * 1000) + 60_000) == []

    # Usage: every invocation reached the broker as function_invoked, with org and project.
    events = wait_for("function_invoked on the bus", lambda: [e for e in invoked_events() if e["payload"]["request_id"] == request_id])
    assert events[0]["org_id"] == projects["org"] and events[0]["project_ref"] == ref
    assert events[0]["payload"]["slug"] == "hello" and events[0]["payload"]["status"] == 200

    # The project edge counted the invocations as the project's API usage (requests and the
    # bytes it sent), into the same usage batches as the Management API's.
    seen: dict[str, int] = {"api_requests": 0, "egress_bytes": 0}

    def counted() -> bool:
        for batch in usage_batches():
            for rec in batch["payload"]["records"]:
                if rec["project_ref"] == ref and rec["org_id"] == projects["org"] and rec["metric"] in seen:
                    seen[rec["metric"]] += rec["quantity"]
        return seen["api_requests"] >= 7 and seen["egress_bytes"] > 0  # 4 answers of 200, 3 of 401

    wait_for("the edge's usage of the project", counted)

    # The body route gives the sources back.
    body = http.get(f"/v1/projects/{ref}/functions/hello/body", token=tok).json()
    assert {f["name"] for f in body["files"]} == {"supabase/functions/hello/index.ts", "supabase/functions/hello/deno.json"}

    # Delete: 404 after, through the API and through the API URL.
    assert http.request("DELETE", f"/v1/projects/{ref}/functions/hello", token=tok).status_code == 200
    assert http.get(f"/v1/projects/{ref}/functions/hello", token=tok).status_code == 404
    assert invoke_after_change(edge_url, ref, "hello", a["anon"], lambda r: r.status_code == 404).status_code == 404
    assert http.get(f"/v1/projects/{ref}/functions", token=tok).json() == []


def test_verify_jwt_off_and_json_create(http: Any, edge_url: str, projects: dict[str, Any]) -> None:
    tok, ref = projects["token"], projects["a"]["ref"]
    r = http.post(f"/v1/projects/{ref}/functions", token=tok,
                  json={"slug": "open", "name": "Open", "body": "Deno.serve(() => new Response('open'))",
                        "verify_jwt": False})
    assert r.status_code == 201, r.text
    assert invoke(edge_url, ref, "open").text == "open"
    # PATCH turns verification on: now a key is needed.
    r = http.request("PATCH", f"/v1/projects/{ref}/functions/open", token=tok, json={"verify_jwt": True})
    assert r.status_code == 200 and r.json()["verify_jwt"] is True
    assert invoke_after_change(edge_url, ref, "open", None, lambda r: r.status_code == 401).status_code == 401
    assert invoke(edge_url, ref, "open", projects["a"]["anon"]).text == "open"
    # A JSON create of an existing slug is refused.
    assert http.post(f"/v1/projects/{ref}/functions", token=tok, json={"slug": "open", "name": "x",
                                                                       "body": "x"}).status_code == 409


def test_limits_stop_runaway_functions_and_others_keep_answering(http: Any, edge_url: str,
                                                                 projects: dict[str, Any]) -> None:
    tok, ref, anon = projects["token"], projects["a"]["ref"], projects["a"]["anon"]
    loop = "Deno.serve(() => { while (true) {} });"
    stuck = "Deno.serve(() => new Promise<Response>(() => {}));"
    hog = "const keep: unknown[] = []; Deno.serve(() => { while (true) keep.push(new Array(1e6).fill({x: 1})); });"
    buffers = ("const keep: Uint8Array[] = [];\n"
               "Deno.serve(() => { for (;;) keep.push(new Uint8Array(64 * 1024 * 1024).fill(1)); });")
    for slug, src in (("loop", loop), ("stuck", stuck), ("hog", hog), ("buffers", buffers),
                      ("ok", "Deno.serve(() => new Response('ok'))")):
        assert deploy(http, tok, ref, slug, src).status_code == 201
    assert invoke(edge_url, ref, "ok", anon).text == "ok"

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        started = time.monotonic()
        runaway = {slug: pool.submit(invoke, edge_url, ref, slug, anon) for slug in ("loop", "stuck", "hog", "buffers")}
        # While they run, another function of the same project answers at once.
        for _ in range(5):
            t = time.monotonic()
            assert invoke(edge_url, ref, "ok", anon).text == "ok"
            assert time.monotonic() - t < 2.0
        results = {slug: f.result() for slug, f in runaway.items()}
    # A busy loop uses up its CPU time (2 s by default) long before the wall clock (8 s here).
    assert results["loop"].status_code == 546, results["loop"].text
    assert results["loop"].json() == {"code": "WORKER_LIMIT",
                                      "message": "The function exceeded its CPU time limit and was stopped"}
    # A function that never answers (no CPU used) meets the wall clock.
    assert results["stuck"].status_code == 504, results["stuck"].text
    assert results["stuck"].json()["code"] == "WORKER_TIMEOUT"
    assert time.monotonic() - started < 30
    assert results["hog"].status_code == 546, results["hog"].text
    assert results["hog"].json()["code"] == "WORKER_LIMIT"
    # ArrayBuffers live outside the V8 heap; the process's data limit stops them (the
    # function sees an allocation error and answers 500), or the memory watchdog does (546).
    assert results["buffers"].status_code in (500, 546), results["buffers"].text
    # The runaway functions were stopped; they start afresh on the next call.
    assert invoke(edge_url, ref, "ok", anon).text == "ok"
    assert invoke(edge_url, ref, "loop", anon, timeout=60).status_code == 546


def test_boot_errors_are_clear(http: Any, edge_url: str, projects: dict[str, Any]) -> None:
    tok, ref, anon = projects["token"], projects["a"]["ref"], projects["a"]["anon"]
    assert deploy(http, tok, ref, "broken", "throw new Error('nope');").status_code == 201
    r = invoke(edge_url, ref, "broken", anon)
    assert r.status_code == 503 and r.json()["code"] == "BOOT_ERROR"
    lines = wait_for("the broken function's logs", lambda: http.get(f"/platform/projects/{ref}/functions/broken/logs", token=tok,
                                      params={"level": "error", "kind": "log"}).json())
    assert any("nope" in x["message"] for x in lines)
    # A bad deploy is refused with a reason and stores nothing.
    r = deploy(http, tok, ref, "bad", "x", entrypoint_path="missing.ts")
    assert r.status_code == 400 and "entrypoint_path" in r.json()["message"]
    assert http.get(f"/v1/projects/{ref}/functions/bad", token=tok).status_code == 404
