"""Web sessions: the one thing the gateway owns. Stored in schema `gateway`; the cookie
carries a random token, the table only its hash; each session has its own CSRF token."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from psycopg_pool import ConnectionPool

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.sessions (
    token_hash text PRIMARY KEY,
    user_id text NOT NULL,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON {schema}.sessions (user_id);
ALTER TABLE {schema}.sessions ADD COLUMN IF NOT EXISTS last_seen_at timestamptz NOT NULL DEFAULT now();
"""
TOUCH_EVERY = timedelta(seconds=60)  # a session's last use is written at most this often


@dataclass(frozen=True)
class Session:
    user_id: str
    csrf_token: str
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore(Protocol):
    def create(self, user_id: str) -> tuple[str, Session]: ...
    def get(self, token: str) -> Session | None: ...
    def delete(self, token: str) -> None: ...
    def delete_others(self, user_id: str, keep_token: str | None) -> int: ...


class SqlSessionStore:
    """Sessions end at their absolute expiry (`ttl`) or after `idle` without use, whichever
    comes first; expired ones are purged as new ones are made."""

    def __init__(self, pool: ConnectionPool, ttl: timedelta, idle: timedelta | None = None):
        self.pool = pool
        self.ttl = ttl
        self.idle = idle or ttl

    def create(self, user_id: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(user_id, secrets.token_urlsafe(24), datetime.now(timezone.utc) + self.ttl)
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO gateway.sessions (token_hash, user_id, csrf_token, expires_at) VALUES (%s, %s, %s, %s)",
                (_hash(token), user_id, session.csrf_token, session.expires_at),
            )
            conn.execute("DELETE FROM gateway.sessions WHERE expires_at <= now() OR last_seen_at < now() - %s",
                         (self.idle,))
        return token, session

    def get(self, token: str) -> Session | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT user_id, csrf_token, expires_at, last_seen_at < now() - %s FROM gateway.sessions "
                "WHERE token_hash = %s AND expires_at > now() AND last_seen_at > now() - %s",
                (TOUCH_EVERY, _hash(token), self.idle),
            ).fetchone()
            if row and row[3]:
                conn.execute("UPDATE gateway.sessions SET last_seen_at = now() WHERE token_hash = %s",
                             (_hash(token),))
        return Session(row[0], row[1], row[2]) if row else None

    def delete_others(self, user_id: str, keep_token: str | None) -> int:
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM gateway.sessions WHERE user_id = %s AND token_hash <> %s",
                               (user_id, _hash(keep_token) if keep_token else ""))
        return int(cur.rowcount or 0)

    def delete(self, token: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM gateway.sessions WHERE token_hash = %s", (_hash(token),))


class MemorySessionStore:
    def __init__(self, ttl: timedelta = timedelta(hours=1)):
        self.ttl = ttl
        self.rows: dict[str, Session] = {}

    def create(self, user_id: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        s = Session(user_id, secrets.token_urlsafe(24), datetime.now(timezone.utc) + self.ttl)
        self.rows[_hash(token)] = s
        return token, s

    def get(self, token: str) -> Session | None:
        s = self.rows.get(_hash(token))
        return s if s and s.expires_at > datetime.now(timezone.utc) else None

    def delete(self, token: str) -> None:
        self.rows.pop(_hash(token), None)

    def delete_others(self, user_id: str, keep_token: str | None) -> int:
        keep = _hash(keep_token) if keep_token else None
        gone = [h for h, s in self.rows.items() if s.user_id == user_id and h != keep]
        for h in gone:
            del self.rows[h]
        return len(gone)
