"""The official Supabase MCP server (`@supabase/mcp-server-supabase`, from package-lock.json)
driven over stdio JSON-RPC against this platform's Management API, as an AI agent uses it:
every tool call must return a result, not an error."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.integration.test_project_lifecycle import new_org, wait_status

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "node_modules" / "@supabase" / "mcp-server-supabase" / "dist" / "cli.js"
FEATURES = "account,database,debugging,development,functions,storage"


class McpClient:
    """Newline-delimited JSON-RPC 2.0 over the server's stdin/stdout."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT)
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True).start()
        self.next_id = 0

    @staticmethod
    def _pump(stream: Any, sink: Any) -> None:
        for line in iter(stream.readline, b""):
            sink(line)

    def send(self, method: str, params: dict[str, Any] | None = None, notify: bool = False) -> Any:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        if not notify:
            self.next_id += 1
            msg["id"] = self.next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        if notify:
            return None
        while True:
            try:
                line = self.lines.get(timeout=60)
            except queue.Empty:
                raise AssertionError(f"no answer to {method}; stderr: {b''.join(self.stderr)[-2000:]!r}") from None
            answer = json.loads(line)
            if answer.get("id") == msg["id"]:
                assert "error" not in answer, (method, answer["error"])
                return answer["result"]

    def tool(self, tool_name: str, **args: Any) -> Any:
        result = self.send("tools/call", {"name": tool_name, "arguments": args})
        text = "".join(c.get("text", "") for c in result.get("content", []))
        assert not result.get("isError"), f"{tool_name} failed: {text}"
        return result.get("structuredContent") or text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def mcp(gateway_url: str, user_token: dict[str, str]) -> Iterator[McpClient]:
    assert CLI.exists(), "npm packages missing: run `make npm` (npm ci from package-lock.json)"
    client = McpClient(["node", str(CLI), "--access-token", user_token["token"], "--api-url", gateway_url,
                        "--features", FEATURES])
    try:
        init = client.send("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "supaplatform-tests", "version": "1"}})
        assert init["serverInfo"]["name"]
        client.send("notifications/initialized", notify=True)
        yield client
    finally:
        client.close()


def test_an_agent_works_on_a_project_through_the_mcp_server(mcp: McpClient, http: Any,
                                                           user_token: dict[str, str]) -> None:
    tok = user_token["token"]
    org = new_org(http, tok, "MCP Org")
    r = http.post("/v1/projects", token=tok, json={"name": "mcp", "organization_slug": org,
                                                   "db_pass": "tenant-password-1", "region": "us-east-1"})
    assert r.status_code == 201, r.text
    ref = r.json()["id"]
    wait_status(http, tok, ref, {"ACTIVE_HEALTHY"})

    tools = {t["name"] for t in mcp.send("tools/list")["tools"]}
    assert {"list_organizations", "execute_sql", "apply_migration", "get_advisors"} <= tools

    assert org in json.dumps(mcp.tool("list_organizations"))
    assert ref in json.dumps(mcp.tool("list_projects"))

    # A migration creates a table without RLS; it is listed, and so are the tables and extensions.
    mcp.tool("apply_migration", project_id=ref, name="create_widgets",
             query="create table public.widgets (id bigint primary key, label text not null);")
    assert "create_widgets" in json.dumps(mcp.tool("list_migrations", project_id=ref))
    out = json.dumps(mcp.tool("execute_sql", project_id=ref,
                              query="insert into public.widgets values (1, 'gear') returning label"))
    assert "gear" in out
    assert "widgets" in json.dumps(mcp.tool("list_tables", project_id=ref, schemas=["public"]))
    assert "pgcrypto" in json.dumps(mcp.tool("list_extensions", project_id=ref))
    assert "widgets" in json.dumps(mcp.tool("generate_typescript_types", project_id=ref))

    # Edge functions: deploy, list, get (the server parses entrypoint_path as a file:// URL).
    mcp.tool("deploy_edge_function", project_id=ref, name="hello", entrypoint_path="index.ts", verify_jwt=False,
             files=[{"name": "index.ts", "content": "Deno.serve(() => new Response('hi'))"}])
    assert "hello" in json.dumps(mcp.tool("list_edge_functions", project_id=ref))
    fn = json.dumps(mcp.tool("get_edge_function", project_id=ref, function_slug="hello"))
    assert "Deno.serve" in fn and "index.ts" in fn

    # No Storage tables in this project yet: an empty list, not an error.
    buckets = mcp.tool("list_storage_buckets", project_id=ref)
    assert '"buckets":[]' in (buckets if isinstance(buckets, str) else json.dumps(buckets)).replace(" ", "")
    # The project's database log has the migration it applied.
    logs = json.dumps(mcp.tool("get_logs", project_id=ref, service="postgres"))
    assert "create_widgets" in logs
    advisors = json.dumps(mcp.tool("get_advisors", project_id=ref, type="security"))
    assert "rls_disabled_in_public" in advisors and "widgets" in advisors
