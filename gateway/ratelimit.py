"""Abuse limits on the gateway's authentication surface, shared by every gateway process.

Each limited action (sign-in, sign-up, token authentication failures, invitations, password
changes) counts attempts per client IP and per account (the email or user id) in fixed
windows of `rate_limit_window_s` seconds, in PostgreSQL (`gateway.rate_limits`), so two
gateway processes behind one balancer share the counts. Past a limit the gateway answers
429 with `Retry-After` (the seconds left in the window) and does no other work for the call.

Token authentication counts only failures, per IP. Once a process learns that an IP is over
its limit, it remembers so until the window ends and refuses that IP's bearer tokens without
asking PostgreSQL or orgs: a flood of bad tokens costs one dictionary lookup each.

The client IP is the peer address, or, behind a reverse proxy listed in
`gateway_trusted_proxies`, what that proxy wrote into X-Forwarded-For (`client_ip`).
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from services.shared.settings import Settings

from .errors import HttpError

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.rate_limits (
    bucket text NOT NULL,
    window_start bigint NOT NULL,
    hits integer NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
"""

# Per action: how many attempts per window from one IP, and for one account, as multiples
# of the settings rate_limit_per_ip and rate_limit_per_account (None: not counted that way).
ACTIONS: dict[str, tuple[float | None, float | None]] = {
    "signin": (1.0, 1.0),
    "signup": (1.0, 1.0),  # per address too: nobody's mailbox is flooded with sign-up mail
    "verify": (1.0, 1.0),  # following verification links (per IP), asking for new ones (per user)
    "token": (1.0, None),  # failed bearer tokens only
    "invite": (1.0, 1.0),  # per inviting user
    "password": (1.0, 1.0),  # password changes, per user
}


class RateLimited(HttpError):
    def __init__(self, action: str, retry_after: int):
        super().__init__(429, f"too many {action} attempts; try again in {retry_after}s")
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Limits:
    window_s: int
    per_ip: int
    per_account: int

    @classmethod
    def of(cls, settings: Settings) -> "Limits":
        return cls(settings.rate_limit_window_s, settings.rate_limit_per_ip, settings.rate_limit_per_account)

    def limit(self, action: str, kind: str) -> int | None:
        ip_x, acct_x = ACTIONS[action]
        x = ip_x if kind == "ip" else acct_x
        if x is None:
            return None
        return max(1, int((self.per_ip if kind == "ip" else self.per_account) * x))


class Counter(Protocol):
    def hit(self, buckets: list[str], window_start: int) -> dict[str, int]: ...


class SqlCounter:
    def __init__(self, pool: Any):
        self.pool = pool

    def hit(self, buckets: list[str], window_start: int) -> dict[str, int]:
        values = ", ".join(["(%s, %s, 1)"] * len(buckets))
        params: list[Any] = []
        for b in buckets:
            params += [b, window_start]
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"INSERT INTO gateway.rate_limits (bucket, window_start, hits) VALUES {values} "
                "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 "
                "RETURNING bucket, hits", params).fetchall()
            if random.random() < 0.01:  # old windows are worth nothing: purge now and then
                conn.execute("DELETE FROM gateway.rate_limits WHERE window_start < %s", (window_start - 3600,))
        return {r[0]: int(r[1]) for r in rows}

    def close(self) -> None:
        self.pool.close()


class MemoryCounter:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, buckets: list[str], window_start: int) -> dict[str, int]:
        with self._lock:
            out = {}
            for b in buckets:
                self.rows[(b, window_start)] = self.rows.get((b, window_start), 0) + 1
                out[b] = self.rows[(b, window_start)]
            return out


class RateLimiter:
    def __init__(self, counter: Counter, limits: Limits, clock: Any = time.time, trusted_proxies: str = ""):
        self.counter = counter
        self.limits = limits
        self.clock = clock
        self.proxies = parse_proxies(trusted_proxies)
        self._blocked: dict[str, float] = {}  # bucket -> until (epoch s), learnt from the counter

    def _window(self) -> tuple[int, int]:
        now = self.clock()
        start = int(now // self.limits.window_s) * self.limits.window_s
        return start, max(1, int(start + self.limits.window_s - now + 0.999))

    def _buckets(self, action: str, ip: str | None, account: str | None) -> dict[str, int]:
        out: dict[str, int] = {}
        for kind, key in (("ip", ip), ("acct", account)):
            limit = self.limits.limit(action, "ip" if kind == "ip" else "account")
            if key and limit is not None:
                out[f"{action}:{kind}:{key.lower()}"] = limit
        return out

    def retry_after(self, action: str, ip: str | None, account: str | None = None) -> int | None:
        """Seconds until the caller may try again, if this process already knows it is over a
        limit (no I/O); None otherwise."""
        now = self.clock()
        for bucket in self._buckets(action, ip, account):
            until = self._blocked.get(bucket)
            if until is not None:
                if until > now:
                    return max(1, int(until - now + 0.999))
                self._blocked.pop(bucket, None)
        return None

    def blocked(self, action: str, ip: str | None, account: str | None = None) -> None:
        """Raise RateLimited if this process already knows the caller is over a limit (no I/O)."""
        retry = self.retry_after(action, ip, account)
        if retry is not None:
            raise RateLimited(action, retry)

    def hit(self, action: str, ip: str | None, account: str | None = None) -> None:
        """Count one attempt; raise RateLimited when it is past a limit."""
        self.blocked(action, ip, account)
        buckets = self._buckets(action, ip, account)
        if not buckets:
            return
        start, retry_after = self._window()
        counts = self.counter.hit(list(buckets), start)
        over = [b for b, limit in buckets.items() if counts.get(b, 0) > limit]
        if over:
            until = start + self.limits.window_s
            for b in over:
                self._blocked[b] = until
            if len(self._blocked) > 100_000:  # bounded memory under a spray of addresses
                self._blocked = {b: u for b, u in self._blocked.items() if u > self.clock()}
            raise RateLimited(action, retry_after)

    def client_ip(self, request: Any) -> str:
        return client_ip(request, self.proxies)

    def close(self) -> None:
        close = getattr(self.counter, "close", None)
        if callable(close):
            close()


def parse_proxies(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The `gateway_trusted_proxies` setting: addresses or networks, comma-separated."""
    nets = []
    for part in (raw or "").split(","):
        part = part.strip()
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"gateway_trusted_proxies: {part!r} is not an address or a network") from None
    return tuple(nets)


def _trusted(address: str, proxies: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in proxies)


def client_ip(request: Any, proxies: tuple[Any, ...] = ()) -> str:
    """The client's address for the abuse limits. X-Forwarded-For is believed only when the
    direct peer is a trusted proxy, and then only up to the first address (from the right)
    that is not itself a trusted proxy: whatever a client writes into the header itself sits
    left of that and is never read, so a spoofed header cannot pick its bucket."""
    peer = str(request.remote_addr or "unknown")
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for v in request.headers.getlist("X-Forwarded-For") for h in v.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where the nearest proxy wrote the client: count the proxy
    return peer


ACTIVE: RateLimiter | None = None  # this process's limiter, for gateway/guard.py


def build_limiter(settings: Settings) -> RateLimiter:
    global ACTIVE
    from services.shared.db import make_pool

    ACTIVE = RateLimiter(SqlCounter(make_pool(settings, "gateway", DDL, max_size=4)), Limits.of(settings),
                         trusted_proxies=settings.gateway_trusted_proxies)
    return ACTIVE
