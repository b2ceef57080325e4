"""The only ways out of an edge function's sandbox: its egress proxy (HTTP and HTTPS to the
public internet) and its database forwarder (the project's own database, as the project's
own login), each on a Unix socket in the worker's folder that the runtime listens on.

Inside the sandbox the network namespace has nothing but its own loopback; the worker's
bootstrap bridges `127.0.0.1:3128` (HTTP_PROXY/HTTPS_PROXY) and `127.0.0.1:5432`
(SUPABASE_DB_URL) there to these sockets. So whatever tenant code does, every byte that
leaves goes through this module, which decides where it may go:

- **EgressProxy** speaks HTTP proxy (CONNECT for HTTPS, absolute-form requests for plain
  HTTP). It resolves names itself and connects only to an address it checked, so DNS tricks
  (a public name resolving to 127.0.0.1, rebinding between check and use) get nowhere.
  Refused: loopback, RFC 1918, link-local, CGNAT, multicast, reserved, unspecified, IPv6
  loopback/ULA/link-local/multicast, IPv4 embedded in IPv6 (mapped, NAT64, 6to4) when the
  embedded address is refused, every address of this machine's own interfaces (read from
  /proc afresh before any connection is let through), and the operator's
  `functions_egress_deny`.
- **DbForwarder** reads the PostgreSQL startup message and only relays a session whose
  user and database are the project's own; anything else gets a FATAL ErrorResponse. It
  only ever connects to that tenant's database server. The password is checked by
  PostgreSQL itself (tenant logins are SCRAM-only and confined by pg_hba).

asyncio only; imports the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from pathlib import Path
from typing import Callable, Iterable

log = logging.getLogger("functions.egress")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DENIED_NETWORKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("fc00::/7", "unique local (ULA)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
MAX_HEAD = 16 * 1024
CONNECT_TIMEOUT_S = 10.0
DNS_TIMEOUT_S = 5.0
PIPE_CHUNK = 64 * 1024


def host_addresses() -> set[Address]:
    """Every address of this machine's interfaces (IPv4 from the routing table's local
    entries, IPv6 from if_inet6): a service listening on 0.0.0.0 answers on all of them."""
    found: set[Address] = set()
    with contextlib.suppress(OSError):
        leaf = None
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("|--"):
                leaf = stripped[3:].strip()
            elif stripped.startswith("/32 host LOCAL") and leaf:
                with contextlib.suppress(ValueError):
                    found.add(ipaddress.ip_address(leaf))
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv6Address(int(raw, 16)))
    return found


class EgressPolicy:
    """Which destination addresses tenant code may reach."""

    def __init__(self, extra_deny: Iterable[str] = (), *, host_addrs: Callable[[], set[Address]] = host_addresses):
        self.networks: list[tuple[Network, str]] = [(ipaddress.ip_network(n), why) for n, why in DENIED_NETWORKS]
        for cidr in extra_deny:
            cidr = cidr.strip()
            if cidr:
                self.networks.append((ipaddress.ip_network(cidr, strict=False), "denied by the operator"))
        self._host_addrs = host_addrs
        self._host: set[Address] = set()
        self._host_at = 0.0

    def own_addresses(self, fresh: bool = False) -> set[Address]:
        now = time.monotonic()
        if fresh or now - self._host_at > 1.0:
            self._host, self._host_at = self._host_addrs(), now
        return self._host

    def refusal(self, addr: Address) -> str | None:
        """Why `addr` may not be reached, or None if it may."""
        if isinstance(addr, ipaddress.IPv6Address):
            embedded = addr.ipv4_mapped or addr.sixtofour
            if embedded is None and addr in ipaddress.ip_network("64:ff9b::/96"):
                embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
            if embedded is not None:
                inner = self.refusal(embedded)
                if inner:
                    return f"{inner} (embedded in {addr})"
        for net, why in self.networks:
            if addr.version == net.version and addr in net:
                return why
        # Before letting an address through, read the machine's addresses afresh: an interface
        # added a moment ago (a container bridge, a VPN) must not be reachable even briefly.
        if addr in self.own_addresses() or addr in self.own_addresses(fresh=True):
            return "an address of the platform's own machine"
        return None


class Refused(Exception):
    pass


async def resolve_allowed(policy: EgressPolicy, host: str, port: int) -> list[tuple[int, str]]:
    """The (family, address) pairs of `host` tenant code may reach; Refused (with the reason)
    when there are none."""
    host = host.strip("[]")
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, str(literal))]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), DNS_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            raise Refused(f"could not resolve {host}: {exc}") from None
        candidates = []
        for family, _, _, _, sockaddr in infos:
            if (family, sockaddr[0]) not in candidates:
                candidates.append((family, str(sockaddr[0])))
    allowed, reasons = [], []
    for family, addr in candidates:
        why = policy.refusal(ipaddress.ip_address(addr.split("%")[0]))
        if why:
            reasons.append(f"{addr} is {why}")
        else:
            allowed.append((family, addr))
    if not allowed:
        raise Refused(f"egress to {host}:{port} refused: " + "; ".join(reasons or ["no address"]))
    return allowed


async def open_allowed(policy: EgressPolicy, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    last: Exception | None = None
    for _, addr in await resolve_allowed(policy, host, port):
        try:
            return await asyncio.wait_for(asyncio.open_connection(addr, port), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            last = exc
    raise ConnectionError(f"could not connect to {host}:{port}: {last}")


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Callable[[int], None] | None = None) -> None:
    try:
        while True:
            data = await reader.read(PIPE_CHUNK)
            if not data:
                break
            if count:
                count(len(data))
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Relay both ways until both directions end; then close both."""
    try:
        await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
    finally:
        for w in (a[1], b[1]):
            with contextlib.suppress(Exception):
                w.close()


class UnixService:
    """A listener on one Unix socket, with the connections it serves, closed together; at
    most `max_connections` at once (one worker cannot exhaust the runtime's descriptors)."""

    max_connections = 256

    def __init__(self, path: Path):
        self.path = path
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self, mode: int = 0o666) -> None:
        self.path.unlink(missing_ok=True)
        self.server = await asyncio.start_unix_server(self._accept, path=str(self.path))
        # The worker runs as another (unprivileged) user: it needs write permission to connect.
        self.path.chmod(mode)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.writers) >= self.max_connections:
            writer.transport.abort()
            return
        self.writers.add(writer)
        try:
            await self.serve(reader, writer)
        except Exception as exc:  # noqa: BLE001 -- one connection's failure is its own
            log.debug("%s: %s", self.path.name, exc)
        finally:
            self.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        # Closing the worker's side ends its relays (their upstream sides close with them).
        for w in list(self.writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self.path.unlink(missing_ok=True)


def _http_error(status: int, reason: str, message: str) -> bytes:
    body = (message + "\n").encode()
    mark = "X-Egress-Refused: 1\r\n" if status == 403 else ""
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{mark}Connection: close\r\n\r\n").encode() + body


class EgressProxy(UnixService):
    """HTTP proxy for one worker. CONNECT host:port (HTTPS, WebSocket over TLS) becomes a
    tunnel; an absolute-form request (plain HTTP) is sent on with `Connection: close`, one
    request per connection, so a kept-alive connection cannot carry a second request to
    another host past the check."""

    def __init__(self, path: Path, policy: EgressPolicy, on_refused: Callable[[str], None] | None = None):
        super().__init__(path)
        self.policy = policy
        self.on_refused = on_refused

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        if len(head) > MAX_HEAD:
            writer.write(_http_error(431, "Request Header Fields Too Large", "request head too large"))
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            writer.write(_http_error(400, "Bad Request", "malformed request line"))
            return
        headers = [line for line in lines[1:] if line]
        if method.upper() == "CONNECT":
            host, _, port_s = target.rpartition(":")
            if not host or not port_s.isdigit():
                writer.write(_http_error(400, "Bad Request", "CONNECT needs host:port"))
                return
            upstream = await self._open(writer, host, int(port_s))
            if upstream is None:
                return
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await splice((reader, writer), upstream)
            return
        if not target.lower().startswith("http://"):
            writer.write(_http_error(400, "Bad Request", "only absolute http:// requests and CONNECT are proxied"))
            return
        from urllib.parse import urlsplit

        url = urlsplit(target)
        if not url.hostname:
            writer.write(_http_error(400, "Bad Request", "request target has no host"))
            return
        upstream = await self._open(writer, url.hostname, url.port or 80)
        if upstream is None:
            return
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        kept = [h for h in headers if h.split(":", 1)[0].strip().lower() not in
                ("proxy-connection", "proxy-authorization", "connection", "keep-alive")]
        if not any(h.lower().startswith("host:") for h in kept):
            kept.insert(0, f"Host: {url.netloc}")
        out = f"{method} {path} {version}\r\n" + "".join(f"{h}\r\n" for h in kept) + "Connection: close\r\n\r\n"
        upstream[1].write(out.encode("latin-1"))
        await upstream[1].drain()
        await splice((reader, writer), upstream)

    async def _open(self, writer: asyncio.StreamWriter, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await open_allowed(self.policy, host, port)
        except Refused as exc:
            if self.on_refused:
                self.on_refused(str(exc))
            writer.write(_http_error(403, "Forbidden", str(exc)))
        except ConnectionError as exc:
            writer.write(_http_error(502, "Bad Gateway", str(exc)))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return None


# -- PostgreSQL ---------------------------------------------------------------------------------

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 3
MAX_STARTUP = 10_000


def pg_error(message: str, code: str = "28000") -> bytes:
    """A FATAL ErrorResponse, as the server would send it."""
    fields = b"".join(k + v.encode() + b"\0" for k, v in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code),
                                                         (b"M", message))) + b"\0"
    return b"E" + struct.pack("!I", len(fields) + 4) + fields


def parse_startup(body: bytes) -> dict[str, str]:
    """The parameters of a StartupMessage (after its length and protocol version)."""
    parts = body.split(b"\0")
    params: dict[str, str] = {}
    for i in range(0, len(parts) - 1, 2):
        if not parts[i]:
            break
        params[parts[i].decode("utf-8", "replace")] = parts[i + 1].decode("utf-8", "replace")
    return params


class DbForwarder(UnixService):
    """The project's own database, for one worker: only `user` into `database`, only to
    `host:port`. (PostgreSQL caps the tenant's logins at 20 sessions anyway.)"""

    max_connections = 32

    def __init__(self, path: Path, *, host: str, port: int, database: str, user: str):
        super().__init__(path)
        self.host, self.port, self.database, self.user = host, port, database, user

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                length, code = struct.unpack("!II", await reader.readexactly(8))
            except asyncio.IncompleteReadError:
                return
            if code in (SSL_REQUEST, GSSENC_REQUEST) and length == 8:
                # No TLS on this hop: it is a Unix socket and then loopback; the client
                # falls back to plain (sslmode=prefer, postgres.js's default too).
                writer.write(b"N")
                await writer.drain()
                continue
            break
        if code == CANCEL_REQUEST:
            writer.write(pg_error("cancel requests are not forwarded", "0A000"))
            return
        if code >> 16 != PROTOCOL_3 or not 8 < length <= MAX_STARTUP:
            writer.write(pg_error("unsupported startup message", "08P01"))
            return
        body = await reader.readexactly(length - 8)
        params = parse_startup(body)
        user, database = params.get("user", ""), params.get("database") or params.get("user", "")
        if params.get("replication"):
            writer.write(pg_error("replication connections are not allowed here"))
            return
        if user != self.user or database != self.database:
            writer.write(pg_error(f"this connection reaches only the project's own database {self.database!r} "
                                  f"as {self.user!r}, not {database!r} as {user!r}"))
            return
        try:
            up = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            writer.write(pg_error(f"the project's database is unreachable: {exc}", "08006"))
            return
        up[1].write(struct.pack("!II", length, code) + body)
        await up[1].drain()
        await splice((reader, writer), up)
