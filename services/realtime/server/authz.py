"""Who may do what on a channel: the JWT check (a project's HS256 secret; `role` and `exp`
required, as Supabase Realtime requires them) and, for private channels, the project's RLS
policies on `realtime.messages`, evaluated the way Supabase Realtime evaluates them: inside a
transaction that is always rolled back, a row per extension is written for the topic (as the
table's owner), then, under the caller's role with `request.jwt.claims` and `realtime.topic`
set, what the caller can SELECT is what it may read, and an INSERT the policies accept is
what it may write.

Imports PyJWT, psycopg, the standard library and shared tenants.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
import psycopg
from psycopg import sql

from services.shared.tenants import Tenant

ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class TokenRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def confirm_token(token: str | None, tenant: Tenant) -> dict[str, Any]:
    """The claims of a token signed with the project's secret, not expired; else TokenRefused
    with Supabase Realtime's code and message."""
    if not token or not isinstance(token, str):
        raise TokenRefused("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
    try:
        claims = jwt.decode(token, tenant.jwt_secret, algorithms=["HS256"],
                            options={"verify_aud": False, "verify_exp": False})
    except jwt.InvalidSignatureError:
        raise TokenRefused("JwtSignatureError", "Failed to validate JWT signature") from None
    except jwt.DecodeError:
        raise TokenRefused("MalformedJWT", "The token provided is not a valid JWT") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRefused("InvalidJWTToken", str(exc)) from None
    exp, role = claims.get("exp"), claims.get("role")
    if not isinstance(exp, (int, float)) or not isinstance(role, str) or not role:
        raise TokenRefused("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
    if claims.get("ref") not in (None, tenant.ref):
        raise TokenRefused("JwtSignatureError", "Failed to validate JWT signature")
    left = int(exp) - int(time.time())
    if left <= 0:
        raise TokenRefused("InvalidJWTToken", f"Token has expired {-left} seconds ago")
    return dict(claims)


@dataclass(frozen=True)
class Policies:
    broadcast_read: bool = False
    broadcast_write: bool = False
    presence_read: bool = False
    presence_write: bool = False

    @property
    def can_read(self) -> bool:
        return self.broadcast_read or self.presence_read


ALL = Policies(True, True, True, True)


class PolicyError(Exception):
    """The policies could not be evaluated (database away, no realtime.messages)."""


class Authorizer:
    """RLS checks against each project's database, at most `per_project` connections at once
    per project (a tenant login may hold 20), each opened for the check and closed after."""

    def __init__(self, per_project: int = 2, timeout_s: float = 5.0):
        self.per_project = per_project
        self.timeout_s = timeout_s
        self._gates: dict[str, asyncio.Semaphore] = {}

    async def policies(self, tenant: Tenant, topic: str, role: str, claims: dict[str, Any]) -> Policies:
        if not ROLE.match(role):
            return Policies()
        gate = self._gates.setdefault(tenant.ref, asyncio.Semaphore(self.per_project))
        async with gate:
            try:
                return await asyncio.wait_for(self._check(tenant, topic, role, claims), self.timeout_s)
            except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
                raise PolicyError(str(exc).strip() or type(exc).__name__) from None

    async def _check(self, tenant: Tenant, topic: str, role: str, claims: dict[str, Any]) -> Policies:
        conn = await psycopg.AsyncConnection.connect(tenant.conninfo("owner") + " application_name=realtime",
                                                     connect_timeout=int(self.timeout_s))
        try:
            async with conn.transaction(force_rollback=True):
                await conn.execute(
                    "INSERT INTO realtime.messages (topic, extension, private) VALUES (%s, 'broadcast', true), "
                    "(%s, 'presence', true)", (topic, topic))
                await conn.execute(
                    "SELECT set_config('request.jwt.claims', %s, true), set_config('request.jwt.claim.role', %s, true), "
                    "set_config('request.jwt.claim.sub', %s, true), set_config('realtime.topic', %s, true)",
                    (json.dumps(claims), role, str(claims.get("sub") or ""), topic))
                try:
                    async with conn.transaction():
                        await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                except psycopg.Error:
                    return Policies()  # no such role, or not one a token may take
                try:
                    async with conn.transaction():
                        cur = await conn.execute(
                            "SELECT DISTINCT extension FROM realtime.messages WHERE topic = realtime.topic() "
                            "AND extension IN ('broadcast', 'presence')")
                        readable = {r[0] for r in await cur.fetchall()}
                except psycopg.errors.InsufficientPrivilege:
                    readable = set()
                writable = set()
                for extension in ("broadcast", "presence"):
                    try:
                        async with conn.transaction():
                            await conn.execute(
                                "INSERT INTO realtime.messages (topic, extension, private) "
                                "VALUES (realtime.topic(), %s, true)", (extension,))
                        writable.add(extension)
                    except psycopg.errors.InsufficientPrivilege:
                        pass
                return Policies("broadcast" in readable, "broadcast" in writable, "presence" in readable,
                                "presence" in writable)
        finally:
            await conn.close()
