"""billing's subscription index: one row per organization (its plan as of the row's aggregate
version), for operators and for finding every organization whose period must be closed.

The Subscription aggregate is the truth; this table is a read model of it. Rows are
written by the `organization_created` handler (claiming the message's event_id in the
same transaction, so a redelivery or replay changes nothing twice) with the aggregate's
current plan, and refreshed after each plan change, a row only ever moving to a newer
aggregate version. So `projections rebuild billing.subscriptions` (reset, then replay
orgs' history) rebuilds every row from the aggregates, plan changes included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from services.shared.consuming import claim
from services.shared.errors import NotFound

SCHEMA = "billing"
CONSUMER = "billing.subscriptions"
DDL = """
CREATE TABLE IF NOT EXISTS {schema}.subscriptions (
    org_slug text PRIMARY KEY,
    plan text NOT NULL,
    started_at timestamptz NOT NULL,
    source_event_id uuid NOT NULL
);
ALTER TABLE {schema}.subscriptions ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;
"""


class Subscriptions:
    """The SQL read model (PostgreSQL, schema billing)."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def close(self) -> None:
        self.pool.close()

    def record_start(self, envelope: dict[str, Any], plan: str, version: int) -> bool:
        """Index an organization from its organization_created message. False if this
        message was already applied."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if not claim(cur, SCHEMA, CONSUMER, envelope["event_id"]):
                return False
            cur.execute(
                "INSERT INTO billing.subscriptions (org_slug, plan, started_at, source_event_id, version) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (org_slug) DO UPDATE SET plan = EXCLUDED.plan, "
                "version = EXCLUDED.version WHERE billing.subscriptions.version < EXCLUDED.version",
                (envelope["payload"]["slug"], plan, envelope["occurred_at"], envelope["event_id"], version),
            )
            return True

    def already_applied(self, event_id: str) -> bool:
        with self.pool.connection() as conn:
            return conn.execute("SELECT 1 FROM billing.processed_messages WHERE consumer = %s AND event_id = %s",
                                (CONSUMER, event_id)).fetchone() is not None

    def record_plan(self, org_slug: str, plan: str, version: int) -> None:
        """Refresh a row after a plan change (a missing row is restored by its org's
        organization_created, which reads the aggregate then)."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE billing.subscriptions SET plan = %s, version = %s WHERE org_slug = %s "
                         "AND version < %s", (plan, version, org_slug, version))

    def org_slugs(self) -> list[str]:
        with self.pool.connection() as conn:
            return [r[0] for r in conn.execute("SELECT org_slug FROM billing.subscriptions ORDER BY org_slug")]

    def get(self, org_slug: str) -> dict[str, Any]:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT org_slug, plan, started_at, version FROM billing.subscriptions "
                               "WHERE org_slug = %s", (org_slug,)).fetchone()
        if row is None:
            raise NotFound(f"no subscription for organization {org_slug}")
        return {"org_slug": row[0], "plan": row[1], "started_at": row[2].isoformat(), "version": row[3]}

    def reset(self) -> None:
        """Empty the read model and its processed-message marks (for a rebuild from 0)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM billing.subscriptions")
            conn.execute("DELETE FROM billing.processed_messages WHERE consumer = %s", (CONSUMER,))


class MemorySubscriptions(Subscriptions):
    """The same read model in memory, for scenario tests on eventsourcing's in-memory store."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.claimed: set[str] = set()

    def close(self) -> None:
        pass

    def already_applied(self, event_id: str) -> bool:
        return event_id in self.claimed

    def record_start(self, envelope: dict[str, Any], plan: str, version: int) -> bool:
        if envelope["event_id"] in self.claimed:
            return False
        self.claimed.add(envelope["event_id"])
        slug = envelope["payload"]["slug"]
        row = self.rows.get(slug)
        if row is None:
            at = envelope["occurred_at"]
            self.rows[slug] = {"org_slug": slug, "plan": plan, "version": version,
                               "started_at": at.isoformat() if isinstance(at, datetime) else str(at)}
        elif row["version"] < version:
            row.update(plan=plan, version=version)
        return True

    def record_plan(self, org_slug: str, plan: str, version: int) -> None:
        row = self.rows.get(org_slug)
        if row is not None and row["version"] < version:
            row.update(plan=plan, version=version)

    def org_slugs(self) -> list[str]:
        return sorted(self.rows)

    def get(self, org_slug: str) -> dict[str, Any]:
        if org_slug not in self.rows:
            raise NotFound(f"no subscription for organization {org_slug}")
        return dict(self.rows[org_slug])

    def reset(self) -> None:
        self.rows.clear()
        self.claimed.clear()
