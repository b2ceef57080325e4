"""billing's subscription read model: one row per organization, fed by orgs events.

Each effect is applied in the same transaction that claims the message's event_id, so a
redelivered or replayed `organization_created` never changes anything twice.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool

from services.shared.consuming import claim
from services.shared.errors import NotFound

from .plans import entitlements, load_plans

SCHEMA = "billing"
CONSUMER = "billing.subscriptions"
DDL = """
CREATE TABLE IF NOT EXISTS {schema}.subscriptions (
    org_slug text PRIMARY KEY,
    plan text NOT NULL,
    started_at timestamptz NOT NULL,
    source_event_id uuid NOT NULL
);
"""


class Subscriptions:
    def __init__(self, pool: ConnectionPool, plans: dict[str, dict[str, Any]] | None = None):
        self.pool = pool
        self.plans = plans if plans is not None else load_plans()

    def close(self) -> None:
        self.pool.close()

    def start_free_plan(self, envelope: dict[str, Any]) -> bool:
        """Record a free subscription for a new organization. False if already applied."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if not claim(cur, SCHEMA, CONSUMER, envelope["event_id"]):
                return False
            cur.execute(
                "INSERT INTO billing.subscriptions (org_slug, plan, started_at, source_event_id) "
                "VALUES (%s, 'free', %s, %s) ON CONFLICT (org_slug) DO NOTHING",
                (envelope["payload"]["slug"], envelope["occurred_at"], envelope["event_id"]),
            )
            return True

    def get(self, org_slug: str) -> dict[str, Any]:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT org_slug, plan, started_at FROM billing.subscriptions WHERE org_slug = %s", (org_slug,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no subscription for organization {org_slug}")
        return {"org_slug": row[0], "plan": row[1], "started_at": row[2].isoformat()}

    def entitlements(self, org_slug: str) -> dict[str, Any]:
        """What the org's plan allows. Every organization starts on free, so an org whose
        organization_created billing has not processed yet is on free too."""
        try:
            plan = self.get(org_slug)["plan"]
        except NotFound:
            plan = "free"
        return entitlements(self.plans, plan)

    def reset(self) -> None:
        """Empty the read model and its processed-message marks (for a rebuild from 0)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM billing.subscriptions")
            conn.execute("DELETE FROM billing.processed_messages WHERE consumer = %s", (CONSUMER,))
