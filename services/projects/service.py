"""projects nameko entrypoint. Project lifecycle arrives with its own issue; for now the
service owns the project read model that other services ask about (e.g. orgs, before
deleting an organization, asks how many projects it still has)."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc

from services.shared.nameko_ext import ApplicationProvider, make_pool

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.projects (
    ref text PRIMARY KEY,
    org_slug text NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS projects_org_idx ON {schema}.projects (org_slug);
"""


class ProjectsService:
    name = "projects"

    db = ApplicationProvider(lambda s: make_pool(s, "projects", DDL, max_size=4))

    @rpc
    def health(self) -> dict[str, Any]:
        with self.db.connection() as conn:
            conn.execute("SELECT 1")
        return {"service": self.name, "status": "ok"}

    @rpc
    def count_projects(self, org_slug: str) -> int:
        """Projects of an organization that still exist (not removed)."""
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM projects.projects WHERE org_slug = %s AND status <> 'REMOVED'", (org_slug,)
            ).fetchone()
        return int(row[0]) if row else 0
