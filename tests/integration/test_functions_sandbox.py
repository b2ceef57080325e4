"""Escape attempts from inside a deployed edge function, against the real platform, the
real runtime and its real sandbox (bubblewrap, the egress proxy, the database forwarder).

Every attempt must be refused, and each assertion checks the refusal itself: the error
class and message Deno reports (connection refused in the worker's own network namespace,
network unreachable for the machine's addresses, file not found outside its own view), the
egress proxy's 403 and reason, the database forwarder's FATAL message, the 400 body of a
dot-segment path. And what must keep working does: fetch to a public-style address, the
project's own database through SUPABASE_DB_URL with a real driver (npm:postgres, fetched
from the registry through the egress proxy into the project's own cache).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets as pysecrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from services.functions.runtime.egress import host_addresses
from services.shared.credentials import credentials_path
from services.shared.settings import Settings
from tests.integration.test_functions import deploy, invoke
from tests.support import stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
const held: unknown[] = [];
function err(e: unknown) {
  const x = e as Error & { cause?: unknown };
  const cause = x?.cause as Error | undefined;
  return { name: x?.name, message: String(x?.message), cause: cause ? String(cause.message ?? cause) : null };
}
async function tcp(hostname: string, port: number) {
  try {
    const c = await Deno.connect({ hostname, port });
    c.close();
    return { connected: true };
  } catch (e) {
    return { connected: false, error: err(e) };
  }
}
async function pg(hostname: string, port: number, user: string, database: string) {
  // A bare StartupMessage (protocol 3.0), as any driver sends first; the first answer back.
  const c = await Deno.connect({ hostname, port });
  const params = new TextEncoder().encode(`user\0${user}\0database\0${database}\0\0`);
  const buf = new Uint8Array(8 + params.length);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, buf.length);
  dv.setUint32(4, 196608);
  buf.set(params, 8);
  await c.write(buf);
  const out = new Uint8Array(4096);
  const n = await c.read(out);
  c.close();
  const msg = out.subarray(0, n ?? 0);
  return { type: String.fromCharCode(msg[0] ?? 0), text: new TextDecoder().decode(msg.subarray(5)).replaceAll("\0", "|") };
}
async function get(url: string, headers: Record<string, string> = {}) {
  try {
    const r = await fetch(url, { headers });
    return { status: r.status, body: (await r.text()).slice(0, 400), refused: r.headers.get("x-egress-refused") };
  } catch (e) {
    return { error: err(e) };
  }
}
async function read(path: string) {
  try {
    return { ok: true, text: (await Deno.readTextFile(path)).slice(0, 60) };
  } catch (e) {
    return { ok: false, error: err(e) };
  }
}
function ls(path: string) {
  try {
    return { ok: true, names: [...Deno.readDirSync(path)].map((e) => e.name).sort() };
  } catch (e) {
    return { ok: false, error: err(e) };
  }
}
function listen(port: number) {
  try {
    const l = Deno.listen({ hostname: "0.0.0.0", port });
    held.push(l);
    return { ok: true, addr: l.addr };
  } catch (e) {
    return { ok: false, error: err(e) };
  }
}
const ops: Record<string, (...a: any[]) => unknown> = {
  tcp, pg, get, read, ls, listen,
  env: (name: string) => Deno.env.get(name) ?? null,
  envNames: () => Object.keys(Deno.env.toObject()).sort(),
  pids: () => ({ pid: Deno.pid, ppid: Deno.ppid }),
};
Deno.serve(async (req) => {
  const { calls } = await req.json();
  const results = [];
  for (const [op, ...args] of calls) results.push(await ops[op](...args));
  return Response.json(results);
});
"""

DBPROBE = r"""
import postgres from "npm:postgres@3.4.5";
Deno.serve(async (req) => {
  const { url } = await req.json().catch(() => ({}));
  const sql = postgres(url ?? Deno.env.get("SUPABASE_DB_URL"), { max: 1, connect_timeout: 5, idle_timeout: 1 });
  try {
    const rows = await sql`select current_user as usr, current_database() as db`;
    return Response.json({ ok: true, rows });
  } catch (e) {
    return Response.json({ ok: false, message: String((e as Error).message), code: (e as any).code ?? null });
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
});
"""

ECHO = r"""
Deno.serve((req) => {
  const headers = new Headers({ "content-type": "application/json" });
  headers.append("set-cookie", "sp_session=planted-by-tenant; Path=/; HttpOnly");
  headers.append("set-cookie", "__Host-sp_session=planted; Path=/; Secure");
  headers.append("set-cookie", "theirs=1; Path=/");
  return new Response(JSON.stringify(Object.fromEntries(req.headers)), { headers });
});
"""

REFUSED = {"connected": False, "error": {"name": "ConnectionRefused", "message": "Connection refused (os error 111)",
                                         "cause": None}}
UNREACHABLE = {"connected": False, "error": {"name": "NetworkUnreachable",
                                             "message": "Network is unreachable (os error 101)", "cause": None}}

def not_found(got: dict[str, Any], path: Path | str) -> bool:
    """Deno's answer for a path that does not exist in the worker's view."""
    err = got.get("error") or {}
    return got["ok"] is False and err.get("name") == "NotFound" and \
        err.get("message", "").startswith("No such file or directory (os error 2)") and str(path) in err["message"]


@pytest.fixture(scope="module")
def tenants(settings: Settings, platform: Any, rpc: Any) -> dict[str, Any]:
    """Two projects of two organizations (two users)."""
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    out: dict[str, Any] = {}
    for name in ("a", "b"):
        email = f"sandbox-{name}-{pysecrets.token_hex(4)}@example.com"
        rpc.orgs.register_user(email, "correct horse battery")
        tok = rpc.orgs.issue_token(email, "tests")["token"]
        h = {"Authorization": f"Bearer {tok}"}
        org = requests.post(f"{base}/v1/organizations", headers=h, json={"name": f"Sandbox {name}"}, timeout=20).json()["slug"]
        r = requests.post(f"{base}/v1/projects", headers=h, timeout=20,
                          json={"name": f"sandbox-{name}", "organization_slug": org, "db_pass": "tenant-password-1",
                                "region": "us-east-1"})
        assert r.status_code == 201, r.text
        ref = r.json()["id"]
        keys = requests.get(f"{base}/v1/projects/{ref}/api-keys", headers=h, timeout=20).json()
        out[name] = {"ref": ref, "token": tok, "anon": next(k["api_key"] for k in keys if k["name"] == "anon")}
    return out


class Client:
    def __init__(self, http: Any, edge_url: str, tenant: dict[str, Any]):
        self.http, self.edge, self.t = http, edge_url, tenant

    def deploy(self, slug: str, source: str, **meta: Any) -> None:
        r = deploy(self.http, self.t["token"], self.t["ref"], slug, source, **meta)
        assert r.status_code == 201, r.text

    def probe(self, *calls: list[Any], slug: str = "probe") -> list[Any]:
        r = invoke(self.edge, self.t["ref"], slug, self.t["anon"], json={"calls": list(calls)}, timeout=90)
        assert r.status_code == 200, r.text
        return list(r.json())


class Deployer:
    """Module-scoped stand-in for the function-scoped `http` fixture: deploys only."""

    def __init__(self, settings: Settings):
        self.base = f"http://{settings.gateway_host}:{settings.gateway_port}"

    def post(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return requests.post(self.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)


@pytest.fixture(scope="module")
def a(tenants: dict[str, Any], settings: Settings) -> Client:
    """Project a with the probe deployed, once its database exists (so the worker has its
    database forwarder and SUPABASE_DB_URL)."""
    client = Client(Deployer(settings), settings.edge_public_url, tenants["a"])
    client.deploy("probe", PROBE)
    wait_for("the project's SUPABASE_DB_URL", lambda: client.probe(["env", "SUPABASE_DB_URL"])[0], timeout=60)
    return client


@pytest.fixture(scope="module")
def public_server() -> Iterator[dict[str, Any]]:
    """A plain HTTP server at a public-style address: 198.18.x.y (the benchmarking range, not
    one the egress proxy refuses) on one end of a veth pair whose other end is in a network
    namespace of its own, so the address is not one of this machine's (those are refused).
    Needs root (a veth pair in the machine's namespace); removed in the finalizer."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("creating the public-style test network needs root and iproute2 (CI and `make test` run as root)")
    tag = pysecrets.token_hex(3)
    ns, host_if, ns_if = f"sp-pub-{tag}", f"sph{tag}", f"spn{tag}"
    block = int.from_bytes(pysecrets.token_bytes(2), "big") & 0x7FFF  # a /30 inside 198.18.0.0/15
    base = (198 << 24) | (18 << 16) | (block << 2)

    def ip4(n: int) -> str:
        return socket.inet_ntoa(n.to_bytes(4, "big"))

    host_ip, server_ip = ip4(base + 1), ip4(base + 2)
    log_file = Path(f"/tmp/{ns}.log")

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=20)

    server = None
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", ns, "addr", "add", f"{server_ip}/30", "dev", ns_if)
        run("ip", "-n", ns, "link", "set", ns_if, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        code = ("import http.server, json, sys\n"
                "class H(http.server.BaseHTTPRequestHandler):\n"
                "    def do_GET(self):\n"
                "        body = json.dumps({'public': True, 'path': self.path}).encode()\n"
                "        open(sys.argv[2], 'a').write(self.path + '\\n')\n"
                "        self.send_response(200); self.send_header('Content-Type', 'application/json')\n"
                "        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n"
                "    def log_message(self, *a): pass\n"
                "http.server.HTTPServer((sys.argv[1], 8000), H).serve_forever()\n")
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, server_ip, str(log_file)])

        def up() -> bool:
            try:
                socket.create_connection((server_ip, 8000), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for("the public-style test server", up, timeout=20)
        yield {"url": f"http://{server_ip}:8000", "ip": server_ip, "host_side": host_ip, "log": log_file}
    finally:
        if server is not None:
            stop_process(server, timeout=0)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        log_file.unlink(missing_ok=True)


def machine_addresses() -> list[str]:
    """This machine's own non-loopback addresses (a service on 0.0.0.0 answers on them)."""
    return sorted(str(a) for a in host_addresses() if not a.is_loopback and not a.is_link_local)


def platform_ports(settings: Settings) -> dict[str, int]:
    from urllib.parse import urlsplit

    return {"postgresql": settings.db_port, "amqp": settings.amqp_port,
            "rabbitmq-management": urlsplit(settings.rabbitmq_management_url).port or 15672,
            "erlang-distribution": 25672, "epmd": 4369, "gateway": settings.gateway_port,
            "edge": settings.edge_port, "functions-runtime": settings.functions_runtime_port}


# -- the network ----------------------------------------------------------------------------------

def test_no_platform_port_answers_on_any_loopback_or_machine_address(a: Client, settings: Settings) -> None:
    ports = platform_ports(settings)
    loopbacks = ["127.0.0.1", "127.0.0.2", "127.1.2.3", "::1"]
    machine = machine_addresses()
    assert machine, "this machine has no non-loopback address to try"
    calls, expect = [], []
    for host in loopbacks + machine:
        for name, port in ports.items():
            if host == "127.0.0.1" and port == 5432:
                continue  # the worker's database bridge: tried below, as a database client would
            calls.append(["tcp", host, port])
            # The worker's own namespace has only its own loopback: nothing listens there, and
            # the machine's addresses are not routed at all.
            expect.append((host, name, REFUSED if host in loopbacks else UNREACHABLE))
    results = a.probe(*calls)
    wrong = [(host, name, got) for (host, name, want), got in zip(expect, results) if got != want]
    assert not wrong, wrong


def test_postgresql_as_superuser_through_the_only_path_is_refused(a: Client, tenants: dict[str, Any]) -> None:
    b_ref = tenants["b"]["ref"]
    own = f"postgres.{tenants['a']['ref']}"
    results = a.probe(["pg", "127.0.0.1", 5432, "postgres", "postgres"],
                      ["pg", "127.0.0.1", 5432, "supaplatform", "supaplatform"],
                      ["pg", "127.0.0.1", 5432, f"postgres.{b_ref}", b_ref],
                      ["pg", "127.0.0.1", 5432, own, "postgres"])
    for (user, db), got in zip([("postgres", "postgres"), ("supaplatform", "supaplatform"),
                                (f"postgres.{b_ref}", b_ref), (own, "postgres")], results):
        assert got["type"] == "E", got  # an ErrorResponse, before any authentication
        assert "FATAL" in got["text"] and "|C28000|" in got["text"], got
        assert f"reaches only the project's own database '{tenants['a']['ref']}' as '{own}', " \
               f"not '{db}' as '{user}'" in got["text"], got


def test_http_to_the_platform_is_refused_by_the_egress_proxy(a: Client, settings: Settings) -> None:
    basic = {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}  # guest:guest
    machine = machine_addresses()[0]
    cases = [
        ("http://127.0.0.2:15672/api/overview", basic, "127.0.0.2 is loopback"),
        ("http://127.0.0.1:15672/api/overview", basic, "127.0.0.1 is loopback"),
        (f"http://localhost:{settings.gateway_port}/health", {}, "is loopback"),
        (f"http://[::1]:{settings.edge_port}/health", {}, "::1 is loopback"),
        (f"http://[::ffff:127.0.0.1]:{settings.functions_runtime_port}/status", {}, "loopback (embedded in ::ffff:7f00:1)"),
        ("http://2130706433:15672/api/overview", basic, "127.0.0.1 is loopback"),  # 127.0.0.1 in decimal
        ("http://0.0.0.0:15672/api/overview", basic, "0.0.0.0 is unspecified"),
        (f"http://{machine}:15672/api/overview" if ":" not in machine else f"http://[{machine}]:15672/api/overview",
         basic, "is an address of the platform's own machine"),
        ("http://169.254.169.254/latest/meta-data/", {}, "169.254.169.254 is link-local"),
        ("http://10.1.2.3/", {}, "10.1.2.3 is private (RFC 1918)"),
        ("http://100.64.0.1/", {}, "100.64.0.1 is shared address space (CGNAT)"),
        ("http://[fd00::1]/", {}, "fd00::1 is unique local (ULA)"),
    ]
    results = a.probe(*[["get", url, h] for url, h, _ in cases])
    for (url, _, reason), got in zip(cases, results):
        assert got.get("status") == 403 and got.get("refused") == "1", (url, got)
        assert got["body"].startswith("egress to ") and reason in got["body"], (url, got)
    # HTTPS goes through CONNECT: refused the same way, which Deno reports as a failed tunnel.
    (tls,) = a.probe(["get", f"https://127.0.0.2:{settings.gateway_port}/health"])
    assert tls["error"]["name"] == "TypeError", tls
    assert "tunnel" in tls["error"]["cause"].lower() or "403" in tls["error"]["cause"], tls


def test_fetch_to_a_public_address_works_and_raw_tcp_does_not(a: Client, public_server: dict[str, Any]) -> None:
    token = pysecrets.token_hex(4)
    (got, raw, host_side) = a.probe(["get", f"{public_server['url']}/hello-{token}"],
                                    ["tcp", public_server["ip"], 8000],
                                    ["get", f"http://{public_server['host_side']}:8000/"])
    assert got == {"status": 200, "body": json.dumps({"public": True, "path": f"/hello-{token}"}), "refused": None}
    assert f"/hello-{token}" in public_server["log"].read_text()
    # Only HTTP(S), through the proxy: the namespace has no route of its own.
    assert raw == UNREACHABLE
    # The machine's side of that link is one of the machine's addresses: refused.
    assert host_side["status"] == 403 and "an address of the platform's own machine" in host_side["body"], host_side


def test_listening_gives_nothing_reachable_from_the_machine(a: Client) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (listening,) = a.probe(["listen", port])
    assert listening == {"ok": True, "addr": {"transport": "tcp", "hostname": "0.0.0.0", "port": port}}
    for host in ["127.0.0.1", *[h for h in machine_addresses() if ":" not in h]]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=3).close()


# -- the filesystem and processes ----------------------------------------------------------------

def test_the_filesystem_holds_only_the_function(a: Client, settings: Settings, tenants: dict[str, Any]) -> None:
    state = Path(settings.state_dir)
    b = Client(a.http, a.edge, tenants["b"])
    b.deploy("probe", PROBE + "\n// tenant b's own code\n")
    assert b.probe(["env", "SUPABASE_URL"]) == [settings.project_api_url(tenants["b"]["ref"])]
    b_code = [p for p in (state / "functions" / "code").iterdir()
              if (p / "supabase/functions/probe/index.ts").is_file()
              and "tenant b's own code" in (p / "supabase/functions/probe/index.ts").read_text()]
    assert len(b_code) == 1
    b_cache = state / "functions" / "deno" / "projects" / tenants["b"]["ref"]
    assert b_cache.is_dir()
    assert (state / "master.key").is_file() and credentials_path(settings).is_file()
    paths = [state / "master.key", credentials_path(settings), b_code[0] / "supabase/functions/probe/index.ts",
             b_cache, ROOT / "services/shared/settings.py", Path("/etc/passwd"), Path("/root")]
    results = a.probe(*[["read", str(p)] for p in paths], ["ls", "/"], ["ls", "/sandbox"], ["ls", "/sandbox/run"])
    for path, got in zip(paths, results):
        assert not_found(got, path), (path, got)
    root, sandbox, run = results[len(paths):]
    assert set(root["names"]) <= {"dev", "lib", "lib64", "proc", "sandbox", "usr"}, root
    assert sandbox["names"] == ["bootstrap.ts", "ca-certificates.pem", "code", "deno", "deno-dir", "run"], sandbox
    assert run["names"] == ["db.sock", "egress.sock", "worker.sock"] or run["names"] == ["egress.sock", "worker.sock"], run


def test_no_other_process_is_visible(a: Client, platform: Any) -> None:
    runtime_pid = platform.procs["functions-runtime"].pid
    pids, own, other = a.probe(["pids"], ["read", "/proc/1/environ"], ["read", f"/proc/{runtime_pid}/environ"])
    # Deno is pid 1 of its own pid namespace, with no parent in it: no other process exists there.
    assert pids == {"pid": 1, "ppid": 0}
    # And /proc is refused to function code altogether (Deno's second layer).
    for got in (own, other):
        assert got["ok"] is False and got["error"]["name"] == "NotCapable", got
        assert 'Requires all access to "/proc' in got["error"]["message"], got


def test_the_environment_is_the_functions_own(a: Client, tenants: dict[str, Any], settings: Settings) -> None:
    (names, url) = a.probe(["envNames"], ["env", "SUPABASE_URL"])
    assert not [n for n in names if n.startswith(("PLATFORM_", "NAMEKO_", "PG", "DENO_", "LD_"))], names
    assert {"SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_DB_URL"} <= set(names)
    assert url == settings.project_api_url(tenants["a"]["ref"])


# -- the database, through its one path -------------------------------------------------------------

def test_the_projects_own_database_through_supabase_db_url(a: Client, tenants: dict[str, Any]) -> None:
    ref, b_ref = tenants["a"]["ref"], tenants["b"]["ref"]
    (db_url,) = a.probe(["env", "SUPABASE_DB_URL"])
    assert db_url.startswith(f"postgresql://postgres.{ref}:") and db_url.endswith(f"@127.0.0.1:5432/{ref}"), db_url
    a.deploy("dbprobe", DBPROBE)

    def query(url: str | None = None) -> dict[str, Any]:
        r = invoke(a.edge, ref, "dbprobe", a.t["anon"], json={"url": url} if url else {}, timeout=120)
        assert r.status_code == 200, r.text
        return dict(r.json())

    own = query()
    assert own == {"ok": True, "rows": [{"usr": f"postgres.{ref}", "db": ref}]}, own
    password = db_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    for user, db in (("postgres", "postgres"), ("postgres", ref), (f"postgres.{b_ref}", b_ref)):
        got = query(f"postgresql://{user}:{password}@127.0.0.1:5432/{db}")
        assert got["ok"] is False and got["code"] == "28000", got
        assert f"reaches only the project's own database '{ref}'" in got["message"], got
    # Any other address: nothing there (the worker's namespace), whatever the driver.
    got = query("postgresql://postgres:x@127.0.0.2:5432/postgres")
    assert got["ok"] is False and got["code"] == "ECONNREFUSED", got


# -- secrets that would steer the runtime ------------------------------------------------------------

@pytest.mark.parametrize("name,rule", [
    ("LD_PRELOAD", "names starting with LD_ are reserved (they configure the runtime)"),
    ("ld_library_path", "names starting with LD_ are reserved (they configure the runtime)"),
    ("DENO_DIR", "names starting with DENO_ are reserved (they configure the runtime)"),
    ("NODE_OPTIONS", "names starting with NODE_ are reserved (they configure the runtime)"),
    ("npm_config_registry", "names starting with NPM_CONFIG_ are reserved (they configure the runtime)"),
    ("PATH", "PATH is reserved (it configures the runtime)"),
    ("Home", "HOME is reserved (it configures the runtime)"),
    ("HTTPS_PROXY", "names ending in _PROXY are reserved (they configure the runtime's network)"),
    ("no_proxy", "names ending in _PROXY are reserved (they configure the runtime's network)"),
    ("SUPABASE_URL", "names starting with SUPABASE_ are reserved (they configure the runtime)"),
])
def test_secrets_that_steer_the_runtime_are_refused(http: Any, tenants: dict[str, Any], name: str, rule: str) -> None:
    t = tenants["a"]
    r = http.post(f"/v1/projects/{t['ref']}/secrets", token=t["token"], json=[{"name": name, "value": "x"}])
    assert r.status_code == 400 and r.json()["message"] == f"0.name: {rule}", r.text
    listed = http.get(f"/v1/projects/{t['ref']}/secrets", token=t["token"]).json()
    assert name not in [s["name"] for s in listed]


def test_a_secret_stored_before_the_rule_overrides_nothing(a: Client, settings: Settings, tenants: dict[str, Any],
                                                           public_server: dict[str, Any]) -> None:
    from services.functions.application import secret_digest
    from services.functions.bootstrap import build

    ref = tenants["a"]["ref"]
    planted = {"SUPABASE_URL": "http://evil.example", "HTTPS_PROXY": "http://evil.example:3128",
               "HTTP_PROXY": "http://evil.example:3128", "LD_PRELOAD": "/sandbox/code/evil.so",
               "DENO_DIR": "/tmp/poison", "PATH": "/evil", "OK_SECRET": "fine"}
    app = build(settings)
    try:  # written into the store directly, as a stored secret from before the rule would be
        store = app._secrets(ref)
        store.set(items=[{"name": n, "value_enc": app.box.encrypt(v, f"{ref}:{n}"), "digest": secret_digest(v)}
                         for n, v in planted.items()], at_ms=int(time.time() * 1000),
                  meta={"actor": None, "correlation_id": None, "causation_id": None})
        app._save(store)
    finally:
        app.close()
    wait_for("the planted secrets to reach the worker", lambda: a.probe(["env", "OK_SECRET"]) == ["fine"])
    got = a.probe(["env", "SUPABASE_URL"], ["env", "HTTPS_PROXY"], ["env", "LD_PRELOAD"], ["env", "DENO_DIR"],
                  ["get", f"{public_server['url']}/after-planting"])
    assert got[:4] == [settings.project_api_url(ref), "http://127.0.0.1:3128", None, None], got
    assert got[4]["status"] == 200, got  # the platform's proxy, not the planted one, carried it


# -- the project's origin: cookies, credentials, paths -----------------------------------------------

def test_platform_credentials_never_reach_tenant_code_and_its_cookies_never_come_back(
        a: Client, settings: Settings) -> None:
    ref = a.t["ref"]
    a.deploy("echo", ECHO, verify_jwt=False)
    pat = "sbp_" + "0" * 40
    r = invoke(a.edge, ref, "echo", headers={"Cookie": "sp_session=the-dashboard-session; theirs=0",
                                             "X-CSRF-Token": "csrf-of-the-session", "Authorization": f"Bearer {pat}",
                                             "apikey": pat, "X-Forwarded-Host": "evil.example"})
    assert r.status_code == 200, r.text
    seen = r.json()
    for header in ("cookie", "x-csrf-token", "authorization", "apikey"):
        assert header not in seen, seen
    assert seen["x-forwarded-host"] == settings.edge_public_url.split("://", 1)[1]
    cookies = r.raw.headers.getlist("Set-Cookie")
    assert cookies == ["theirs=1; Path=/"], cookies
    # The dashboard's origin serves no tenant content at all any more.
    g = requests.post(f"http://{settings.gateway_host}:{settings.gateway_port}/p/{ref}/functions/v1/echo", timeout=20)
    assert g.status_code == 404 and "set-cookie" not in {k.lower() for k in g.headers}
    assert "x-forwarded-host" not in g.text


def raw_get(host: str, port: int, path: str) -> tuple[int, dict[str, Any] | str]:
    """GET with the path sent exactly as written (no client normalises it)."""
    conn = http.client.HTTPConnection(host, port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read().decode()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body
    finally:
        conn.close()


DOT = "'.' and '..' path segments are not allowed"


def test_dot_segments_and_disguises_are_refused_before_routing(a: Client, settings: Settings) -> None:
    ref = a.t["ref"]
    edge = ("127.0.0.1", settings.edge_port)
    gateway = (settings.gateway_host, settings.gateway_port)
    # The raw path from the issue, on the dashboard's origin and on the project edge.
    assert raw_get(*gateway, f"/p/{ref}/functions/v1/x/../../../status") == (400, {"message": DOT})
    assert raw_get(*gateway, "/platform/../v1/organizations") == (400, {"message": DOT})
    cases = {
        f"/{ref}/functions/v1/x/../../../status": DOT,
        f"/{ref}/functions/v1/x/%2e%2e/%2E%2e/status": DOT,
        f"/{ref}/functions/v1/probe/./x": DOT,
        f"/{ref}/functions/v1/x%2f..%2f..%2fstatus": "encoded '/', '\\' or NUL characters are not allowed in request paths",
        f"/{ref}/functions/v1/x/..%5c..%5cstatus": "encoded '/', '\\' or NUL characters are not allowed in request paths",
        f"/{ref}/functions/v1/x\\..\\..\\status": "backslashes are not allowed in request paths",
        f"/{ref}/functions/v1/%252e%252e/status": "double-encoded characters ('%25') are not allowed in request paths",
    }
    for path, message in cases.items():
        assert raw_get(*edge, path) == (400, {"message": message}), path
    # The edge forwards nothing but the runtime's invocation route: its internals are not there.
    for path in ("/status", f"/{ref}/status", f"/invoke/{ref}/probe", f"/{ref}/functions/status"):
        status, body = raw_get(*edge, path)
        assert status == 404 and "no such project API here" in body["message"], (path, body)  # type: ignore[index]
    # And the runtime itself listens on loopback only.
    assert settings.functions_runtime_host == "127.0.0.1"
    for host in [h for h in machine_addresses() if ":" not in h]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, settings.functions_runtime_port), timeout=3).close()


# -- limits --------------------------------------------------------------------------------------------

def test_request_bodies_over_the_limit_are_refused(a: Client, settings: Settings) -> None:
    limit = settings.functions_max_request_mb * 1024 * 1024
    url = f"{a.edge}/{a.t['ref']}/functions/v1/probe"
    # Declared too large: refused from Content-Length, before any of it is read.
    conn = http.client.HTTPConnection("127.0.0.1", settings.edge_port, timeout=30)
    try:
        conn.putrequest("POST", f"/{a.t['ref']}/functions/v1/probe")
        conn.putheader("Authorization", f"Bearer {a.t['anon']}")
        conn.putheader("Content-Length", str(limit + 1))
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413 and json.loads(r.read())["message"] == f"request body larger than {limit} bytes"
    finally:
        conn.close()

    # Streamed without a length (chunked): cut off once it passes the limit.
    def chunks() -> Iterator[bytes]:
        block = b"x" * (1024 * 1024)
        for _ in range(settings.functions_max_request_mb + 2):
            yield block

    r = requests.post(url, data=chunks(), headers={"Authorization": f"Bearer {a.t['anon']}"}, timeout=60)
    assert r.status_code == 413 and r.json()["message"] == f"request body larger than {limit} bytes", r.text
