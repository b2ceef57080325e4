"""The orgs read model: the views authentication and the organization list answer from, so
those reads never rebuild aggregates from their events.

Three tables, each row carrying the aggregate version it was made from (an older row never
overwrites a newer one):

- `user_views (user_id, version, view)`: a user as `get_user` shows them, with their
  organizations in the order they joined;
- `token_views (token_id, user_id, revoked, expires_at, version)`: what authenticating a
  token needs (joined to its user's view: one indexed query);
- `org_views (slug, deleted, version, view)`: an organization and its members' roles, for
  `list_organizations` (one query over the user's organizations).

They are written in the same transaction as the events (`ReadModelRecorder`: the rows go in
`save(..., read_model=rows)`), so they are never behind the store; `platformctl projections
rebuild orgs.views` fills them again from the events, in one transaction (readers see the
old rows until it commits). In memory (unit tests) `MemoryOrgViews` holds the same rows.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any, Iterable, Sequence

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.types.json import Jsonb

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.user_views (
    user_id uuid PRIMARY KEY,
    version integer NOT NULL,
    view jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.token_views (
    token_id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    revoked boolean NOT NULL,
    expires_at text,
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.org_views (
    slug text PRIMARY KEY,
    deleted boolean NOT NULL,
    version integer NOT NULL,
    view jsonb NOT NULL
);
"""

UPSERT = {
    "user": "INSERT INTO orgs.user_views (user_id, version, view) VALUES (%s, %s, %s) "
            "ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version, view = EXCLUDED.view "
            "WHERE orgs.user_views.version < EXCLUDED.version",
    "token": "INSERT INTO orgs.token_views (token_id, user_id, revoked, expires_at, version) VALUES (%s, %s, %s, %s, %s) "
             "ON CONFLICT (token_id) DO UPDATE SET revoked = EXCLUDED.revoked, expires_at = EXCLUDED.expires_at, "
             "version = EXCLUDED.version WHERE orgs.token_views.version < EXCLUDED.version",
    "org": "INSERT INTO orgs.org_views (slug, deleted, version, view) VALUES (%s, %s, %s, %s) "
           "ON CONFLICT (slug) DO UPDATE SET deleted = EXCLUDED.deleted, version = EXCLUDED.version, "
           "view = EXCLUDED.view WHERE orgs.org_views.version < EXCLUDED.version",
}

# ("user", user_id, version, view) | ("token", token_id, user_id, revoked, expires_at, version)
# | ("org", slug, deleted, version, view)
Row = tuple[Any, ...]

TOKEN = ("SELECT t.revoked, t.expires_at, t.token_id, u.view FROM orgs.token_views t "
         "JOIN orgs.user_views u ON u.user_id = t.user_id WHERE t.token_id = %s")
USER = "SELECT view FROM orgs.user_views WHERE user_id = %s"
# One row per organization of the user (view NULL: none, or a deleted one); no row: no such user.
ORGS_OF = ("SELECT o.view FROM orgs.user_views u "
           "LEFT JOIN LATERAL jsonb_array_elements_text(u.view -> 'organizations') WITH ORDINALITY AS m(slug, n) ON true "
           "LEFT JOIN orgs.org_views o ON o.slug = m.slug AND NOT o.deleted "
           "WHERE u.user_id = %s ORDER BY m.n")


def _params(row: Row) -> tuple[str, tuple[Any, ...]]:
    kind = row[0]
    if kind == "user":
        return UPSERT[kind], (row[1], row[2], Jsonb(row[3]))
    if kind == "token":
        return UPSERT[kind], tuple(row[1:])
    return UPSERT[kind], (row[1], row[2], row[3], Jsonb(row[4]))


def _execute(curs: Any, rows: Iterable[Row]) -> None:
    by_sql: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        sql, params = _params(row)
        by_sql.setdefault(sql, []).append(params)
    for sql, batch in by_sql.items():
        curs.executemany(sql, batch)


class ReadModelRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, plus the read-model rows in the events' own transaction."""

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        rows: list[Row] = kwargs.get("read_model") or []
        if rows:
            _execute(curs, rows)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


class SqlOrgViews:
    """On the event store's own connection pool (no more connections than it holds)."""

    in_transaction = True  # rows go with the events (ReadModelRecorder)

    def __init__(self, datastore: Any):
        self.datastore = datastore

    def apply(self, rows: Iterable[Row]) -> None:
        rows = list(rows)
        if rows:
            with self.datastore.get_connection() as conn, conn.transaction():
                _execute(conn.cursor(), rows)

    def token(self, token_id: str) -> tuple[bool, str | None, dict[str, Any]] | None:
        """(revoked, expires_at, the user's view) of a token, or None."""
        with self.datastore.get_connection() as conn:
            row = conn.execute(TOKEN, (_uuid(token_id),)).fetchone()
        return None if row is None else (row["revoked"], row["expires_at"], row["view"])

    def user(self, user_id: str) -> dict[str, Any] | None:
        key = _uuid(user_id)
        if key is None:
            return None
        with self.datastore.get_connection() as conn:
            row = conn.execute(USER, (key,)).fetchone()
        return None if row is None else dict(row["view"])

    def organizations_of(self, user_id: str) -> list[dict[str, Any]] | None:
        """The user's live organizations' views (with every member's role), in join order;
        None when there is no such user."""
        key = _uuid(user_id)
        if key is None:
            return None
        with self.datastore.get_connection() as conn:
            rows = conn.execute(ORGS_OF, (key,)).fetchall()
        return [dict(r["view"]) for r in rows if r["view"] is not None] if rows else None

    def is_empty(self) -> bool:
        with self.datastore.get_connection() as conn:
            row = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM orgs.user_views) AS empty").fetchone()
        return bool(row and row["empty"])

    def replace_all(self, rows: Iterable[Row]) -> int:
        """Every row again, in one transaction: readers see the old rows until it commits."""
        rows = list(rows)
        with self.datastore.get_connection() as conn, conn.transaction():
            for table in ("token_views", "user_views", "org_views"):
                conn.execute(f"DELETE FROM orgs.{table}")
            _execute(conn.cursor(), rows)
        return len(rows)


class MemoryOrgViews:
    in_transaction = False  # applied after each save

    def __init__(self) -> None:
        self.users: dict[str, tuple[int, dict[str, Any]]] = {}
        self.tokens: dict[str, tuple[int, str, bool, str | None]] = {}
        self.orgs: dict[str, tuple[int, bool, dict[str, Any]]] = {}

    def apply(self, rows: Iterable[Row]) -> None:
        for row in rows:
            if row[0] == "user":
                _, user_id, version, view = row
                if self.users.get(str(user_id), (0,))[0] < version:
                    self.users[str(user_id)] = (version, copy.deepcopy(view))
            elif row[0] == "token":
                _, token_id, user_id, revoked, expires_at, version = row
                if self.tokens.get(str(token_id), (0,))[0] < version:
                    self.tokens[str(token_id)] = (version, str(user_id), revoked, expires_at)
            else:
                _, slug, deleted, version, view = row
                if self.orgs.get(slug, (0,))[0] < version:
                    self.orgs[slug] = (version, deleted, copy.deepcopy(view))

    def token(self, token_id: str) -> tuple[bool, str | None, dict[str, Any]] | None:
        found = self.tokens.get(str(token_id))
        user = self.users.get(found[1]) if found else None
        return None if found is None or user is None else (found[2], found[3], copy.deepcopy(user[1]))

    def user(self, user_id: str) -> dict[str, Any] | None:
        found = self.users.get(str(user_id))
        return None if found is None else copy.deepcopy(found[1])

    def organizations_of(self, user_id: str) -> list[dict[str, Any]] | None:
        user = self.users.get(str(user_id))
        if user is None:
            return None
        slugs = user[1]["organizations"]
        return [copy.deepcopy(self.orgs[s][2]) for s in slugs if s in self.orgs and not self.orgs[s][1]]

    def is_empty(self) -> bool:
        return not self.users

    def replace_all(self, rows: Iterable[Row]) -> int:
        rows = list(rows)
        self.users.clear()
        self.tokens.clear()
        self.orgs.clear()
        self.apply(rows)
        return len(rows)
