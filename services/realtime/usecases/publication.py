"""Use cases of a project's Postgres changes configuration: read the tenant's
`supabase_realtime` publication (its tables, actions, and each table's replica identity),
change it in the tenant's database as the project's own login, in one transaction, and
record what changed as an event of the project's ProjectPublication.

Mixed into RealtimeApplication (services/realtime/application.py). Imports the domain,
shared errors and the shared tenant SQL runner (services/shared/tenantsql.py). Ports are
passed per call: `projects` (membership, status, the project's database login), `orgs`
(who may read and change it: database.read, database.write).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from psycopg import sql

from services.shared.errors import Conflict, InvalidInput, NotFound
from services.shared.tenantsql import QueryError, Target, TenantSql

from ..domain import ProjectPublication
from ..domain.publication import ACTIONS

PUBLICATION = "supabase_realtime"
MAX_TABLES = 500
# Schemas of the platform's own APIs (and PostgreSQL's): never offered as change sources.
HIDDEN_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "auth", "storage", "realtime", "extensions",
                  "graphql_public", "supabase_migrations")

STATE_SQL = """
SELECT n.nspname::text AS schema, c.relname::text AS name,
       c.relreplident = 'f' AS replica_identity_full,
       c.relrowsecurity AS rls_enabled,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_primary_key,
       EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
               WHERE p.pubname = %(pub)s AND pr.prrelid = c.oid)
         OR COALESCE((SELECT puballtables FROM pg_publication WHERE pubname = %(pub)s), false) AS published
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> ALL(%(hidden)s) AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY 1, 2
"""
PUBLICATION_SQL = ("SELECT pubinsert, pubupdate, pubdelete, pubtruncate, puballtables FROM pg_publication "
                   "WHERE pubname = %(pub)s")


class ProjectsPort(Protocol):
    def get_project(self, user_id: str, ref: str) -> dict[str, Any]: ...
    def get_tenant_credentials(self, ref: str) -> dict[str, str]: ...


class OrgsPort(Protocol):
    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]: ...


def check_publication_body(body: Any) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """{"actions": {insert|update|delete|truncate: bool}, "tables": [{"schema", "name",
    "published"?, "replica_identity_full"?}]}: both optional; every message names its field."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object with actions and/or tables")
    unknown = sorted(set(body) - {"actions", "tables"})
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown field (known: actions, tables)")
    actions = body.get("actions") or {}
    if not isinstance(actions, dict):
        raise InvalidInput("actions: an object of insert, update, delete, truncate: true or false")
    for k, v in actions.items():
        if k not in ACTIONS:
            raise InvalidInput(f"actions.{k}: unknown action (known: {', '.join(ACTIONS)})")
        if not isinstance(v, bool):
            raise InvalidInput(f"actions.{k}: true or false")
    tables = body.get("tables") or []
    if not isinstance(tables, list) or len(tables) > MAX_TABLES:
        raise InvalidInput(f"tables: a list of at most {MAX_TABLES} tables")
    seen: set[tuple[str, str]] = set()
    out = []
    for i, t in enumerate(tables):
        if not isinstance(t, dict):
            raise InvalidInput(f"tables[{i}]: an object with schema and name")
        extra = sorted(set(t) - {"schema", "name", "published", "replica_identity_full"})
        if extra:
            raise InvalidInput(f"tables[{i}].{extra[0]}: unknown field")
        for f in ("schema", "name"):
            if not isinstance(t.get(f), str) or not t[f] or len(t[f]) > 63:
                raise InvalidInput(f"tables[{i}].{f}: a table's {f} (1 to 63 characters)")
        for f in ("published", "replica_identity_full"):
            if f in t and not isinstance(t[f], bool):
                raise InvalidInput(f"tables[{i}].{f}: true or false")
        key = (t["schema"], t["name"])
        if key in seen:
            raise InvalidInput(f"tables[{i}]: {t['schema']}.{t['name']} is listed twice")
        seen.add(key)
        out.append(dict(t))
    return dict(actions), out


class PublicationCommands:
    """The publication part of RealtimeApplication (an eventsourcing Application)."""

    repository: Any
    tenant_sql: TenantSql
    clock: Callable[[], float] = staticmethod(time.time)

    # -- reads ---------------------------------------------------------------------------------
    def get_publication(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort) -> dict[str, Any]:
        """The publication as the tenant's database has it now (a tenant may change it with
        SQL too), every table it could publish, and whether the caller may change it."""
        target, project = self._publication_target(user_id, ref, "database.read", projects, orgs)
        state = self._state(target)
        try:
            orgs.authorize(user_id, str(project["organization_slug"]), "database.write")
            state["can_change"] = True
        except Exception:  # noqa: BLE001  (Forbidden: a read-only member)
            state["can_change"] = False
        return state

    # -- commands ------------------------------------------------------------------------------
    def update_publication(self, user_id: str, ref: str, body: Any, projects: ProjectsPort, orgs: OrgsPort,
                           ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Apply the asked actions and tables in the tenant's database (one transaction),
        then record what changed. Returns the publication now and what changed."""
        actions, tables = check_publication_body(body)
        target, project = self._publication_target(user_id, ref, "database.write", projects, orgs)
        before = self._state(target)
        known = {(t["schema"], t["name"]): t for t in before["tables"]}
        for t in tables:
            if (t["schema"], t["name"]) not in known:
                raise InvalidInput(f"{t['schema']}.{t['name']}: no such table in the project's database "
                                   f"(schemas {', '.join(HIDDEN_SCHEMAS[3:])} are the platform's)")
        added, removed, identity, changed_actions = [], [], {}, {}
        statements: list[sql.Composable] = []
        pub = sql.Identifier(PUBLICATION)
        if not before["exists"]:
            statements.append(sql.SQL("CREATE PUBLICATION {}").format(pub))
        for t in tables:
            cur = known[(t["schema"], t["name"])]
            name = f"{t['schema']}.{t['name']}"
            ident = sql.SQL("{}.{}").format(sql.Identifier(t["schema"]), sql.Identifier(t["name"]))
            if "published" in t and t["published"] != cur["published"]:
                if before["all_tables"]:
                    raise Conflict("the supabase_realtime publication is FOR ALL TABLES: every table publishes; "
                                   "recreate it without FOR ALL TABLES to choose tables")
                statements.append(sql.SQL("ALTER PUBLICATION {} {} TABLE {}").format(
                    pub, sql.SQL("ADD" if t["published"] else "DROP"), ident))
                (added if t["published"] else removed).append(name)
            if "replica_identity_full" in t and t["replica_identity_full"] != cur["replica_identity_full"]:
                statements.append(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(
                    ident, sql.SQL("FULL" if t["replica_identity_full"] else "DEFAULT")))
                identity[name] = [cur["replica_identity_full"], t["replica_identity_full"]]
        wanted = {**before["actions"], **actions}
        for a in ACTIONS:
            if wanted[a] != before["actions"][a]:
                changed_actions[a] = [before["actions"][a], wanted[a]]
        if changed_actions or not before["exists"]:
            publish = ", ".join(a for a in ACTIONS if wanted[a])
            statements.append(sql.SQL("ALTER PUBLICATION {} SET (publish = {})").format(pub, sql.Literal(publish)))
        if statements:
            def apply(conn: Any) -> None:
                for st in statements:
                    conn.execute(st)
            try:
                self.tenant_sql.run(target, "SELECT 1", None, before_commit=apply)
            except QueryError as e:
                raise InvalidInput(f"the project's database refused the change: {e}") from None
        after = self._state(target)
        published = {f"{t['schema']}.{t['name']}": bool(t["replica_identity_full"])
                     for t in after["tables"] if t["published"]}
        meta = {k: (ctx or {}).get(k) for k in ("actor", "correlation_id", "causation_id")}
        for _ in range(10):
            agg = self._publication_aggregate(ref, str(project["organization_slug"]))
            if not agg.record(added=added, removed=removed, identity=identity, actions=changed_actions,
                              published=published, at_ms=int(self.clock() * 1000), meta=meta):
                break
            try:
                self.save(agg)  # type: ignore[attr-defined]
                break
            except IntegrityError:
                continue  # another change was recorded at the same moment: record on top of it
        else:
            raise Conflict("the publication changed at the same time by another request; try again")
        after["changed"] = {"added": sorted(added), "removed": sorted(removed), "replica_identity": identity,
                            "actions": changed_actions}
        after["can_change"] = True
        return after

    def publication_history(self, ref: str) -> list[dict[str, Any]]:
        """Every recorded change of the project's publication, oldest first (platform tools)."""
        try:
            agg = self.repository.get(ProjectPublication.create_id(ref=ref))
        except AggregateNotFoundError:
            return []
        events = self.repository.event_store.get(agg.id)  # type: ignore[attr-defined]
        return [{"version": e.originator_version, "added": e.added, "removed": e.removed, "identity": e.identity,
                 "actions": e.actions, "at_ms": e.at_ms, "actor": (e.meta or {}).get("actor")}
                for e in events if isinstance(e, ProjectPublication.Changed)]

    # -- helpers -------------------------------------------------------------------------------
    def _publication_aggregate(self, ref: str, org: str) -> ProjectPublication:
        try:
            agg: ProjectPublication = self.repository.get(ProjectPublication.create_id(ref=ref))
            return agg
        except AggregateNotFoundError:
            return ProjectPublication(ref=ref, org_slug=org)

    def _publication_target(self, user_id: str, ref: str, action: str, projects: ProjectsPort,
                            orgs: OrgsPort) -> tuple[Target, dict[str, Any]]:
        project = projects.get_project(user_id, ref)  # strangers: NotFound
        orgs.authorize(user_id, str(project["organization_slug"]), action)
        conn = project.get("connection") or {}
        if project.get("status") != "ACTIVE_HEALTHY" or not conn.get("db_name"):
            raise Conflict(f"project {ref} is {project.get('status')}: its database is not available")
        creds = projects.get_tenant_credentials(ref)
        if not creds.get("db_pass"):
            raise NotFound(f"project {ref} not found")
        return Target(conn["db_host"], int(conn["db_port"]), conn["db_name"], conn["db_user"], creds["db_pass"]), project

    def _state(self, target: Target) -> dict[str, Any]:
        args = {"pub": PUBLICATION, "hidden": list(HIDDEN_SCHEMAS)}
        try:
            pub = self.tenant_sql.catalog(target, PUBLICATION_SQL, args)
            tables = self.tenant_sql.catalog(target, STATE_SQL, args)
        except QueryError as e:
            raise Conflict(f"could not read the project's database: {e}") from None
        row = pub[0] if pub else None
        actions = ({"insert": row["pubinsert"], "update": row["pubupdate"], "delete": row["pubdelete"],
                    "truncate": row["pubtruncate"]} if row else {a: True for a in ACTIONS})
        return {"publication": PUBLICATION, "exists": row is not None, "all_tables": bool(row and row["puballtables"]),
                "actions": actions, "tables": [dict(t) for t in tables]}
