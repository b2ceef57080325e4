"""The database service's use cases: run SQL, apply and list migrations, generate types,
run the advisors, show storage buckets and settings, and query the project's logs. Every
call is authorised first (membership through projects, the role's action through orgs); SQL
runs as the tenant's own login. Imports the service's own modules and shared errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from services.shared.errors import Conflict, InvalidInput, NotFound
from services.shared.pgmeta import PgMetaAnswer

from . import advisors, logs, tables
from .storage import ConfigStore, DbLog, SnippetStore
from services.shared.tenantsql import QueryError, Target, TenantSql

HISTORY_DDL = """
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS created_by text;
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS idempotency_key text UNIQUE;
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS rollback text[];
"""

DEFAULT_STORAGE = {
    "fileSizeLimit": 52428800,
    "features": {"imageTransformation": {"enabled": False}, "s3Protocol": {"enabled": False},
                 "icebergCatalog": {"enabled": False, "maxNamespaces": 0, "maxTables": 0, "maxCatalogs": 0},
                 "vectorBuckets": {"enabled": False, "maxBuckets": 0, "maxIndexes": 0}},
    "capabilities": {"list_v2": True, "iceberg_catalog": False},
    "external": {"upstreamTarget": "main"},
    "migrationVersion": "",
    "databasePoolMode": "recycled",
}
MAX_FILE_SIZE = 536870912000


class ProjectsPort(Protocol):
    def get_project(self, user_id: str, ref: str) -> dict[str, Any]: ...
    def get_tenant_credentials(self, ref: str) -> dict[str, str]: ...
    def get_postgrest(self, user_id: str, ref: str) -> dict[str, Any]: ...


class OrgsPort(Protocol):
    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]: ...


class FunctionsPort(Protocol):
    def project_logs(self, user_id: str, ref: str, query: dict[str, Any]) -> list[dict[str, Any]]: ...


class TypesPort(Protocol):
    """postgres-meta's TypeScript generator (services/shared/pgmeta.py)."""

    def typescript(self, connection: str, schemas: list[str]) -> str: ...


class DatabaseApplication:
    def __init__(self, sql: TenantSql, configs: ConfigStore, dblog: DbLog, snippets: SnippetStore,
                 types: TypesPort, log_retention_h: float = 168.0):
        self.types = types
        self.log_retention_h = log_retention_h
        self._purged = datetime.fromtimestamp(0, timezone.utc)
        self.snippets = snippets
        self.sql = sql
        self.configs = configs
        self.dblog = dblog

    # ===== SQL =================================================================================
    def run_query(self, user_id: str, ref: str, query: str, parameters: list[Any] | None, read_only: bool,
                  projects: ProjectsPort, orgs: OrgsPort) -> list[dict[str, Any]]:
        target = self._target(user_id, ref, "database.read" if read_only else "database.write", projects, orgs)
        try:
            return self.sql.run(target, query, parameters, read_only=read_only)
        except QueryError as e:
            self._log_error(ref, user_id, str(e), "query")
            raise InvalidInput(f"Failed to run sql query: {e}") from None

    # ===== migrations ==========================================================================
    def list_migrations(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort) -> list[dict[str, Any]]:
        target = self._target(user_id, ref, "database.read", projects, orgs)
        return self._history(target)

    def apply_migration(self, user_id: str, ref: str, body: dict[str, Any], idempotency_key: str | None,
                        apply: bool, projects: ProjectsPort, orgs: OrgsPort) -> dict[str, Any]:
        """Apply `query` and record it in supabase_migrations.schema_migrations in one
        transaction (apply=False: record only, as PUT does). A repeated Idempotency-Key
        returns the migration recorded the first time."""
        target = self._target(user_id, ref, "database.write", projects, orgs)
        if idempotency_key:
            for m in self._history(target, with_keys=True):
                if m.get("idempotency_key") == idempotency_key:
                    return {"version": m["version"], "name": m.get("name")}
        name = body.get("name") or ""
        recorded: dict[str, Any] = {}

        def record(conn: Any) -> None:
            conn.execute(HISTORY_DDL)
            latest = conn.execute("SELECT max(version) AS v FROM supabase_migrations.schema_migrations").fetchone()["v"]
            version = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
            if latest and latest.isdigit() and int(latest) >= int(version):
                version = str(int(latest) + 1)  # two in the same second: keep versions increasing
            conn.execute("INSERT INTO supabase_migrations.schema_migrations "
                         "(version, name, statements, created_by, idempotency_key, rollback) "
                         "VALUES (%s, %s, %s, %s, %s, %s)",
                         (version, name, [body["query"]], user_id, idempotency_key,
                          [body["rollback"]] if body.get("rollback") else None))
            recorded.update(version=version, name=name)

        try:
            if apply:
                self.sql.run(target, body["query"], None, before_commit=record)
            else:
                self.sql.run(target, "SELECT 1", None, before_commit=record)
        except QueryError as e:
            self._log_error(ref, user_id, str(e), "migration", name=name)
            raise InvalidInput(f"Failed to run sql query: {e}") from None
        self.dblog.append(ref, "LOG", f"migration {recorded['version']} {name} "
                                      f"{'applied' if apply else 'recorded without applying'}",
                          {"identifier": ref, "user": user_id, "parsed.error_severity": "LOG"})
        return recorded

    def _history(self, target: Target, with_keys: bool = False) -> list[dict[str, Any]]:
        try:
            exists = self.sql.catalog(target, "SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL AS e")
            if not exists[0]["e"]:
                return []
            cols = self.sql.catalog(target, "SELECT attname FROM pg_attribute WHERE attrelid = "
                                            "'supabase_migrations.schema_migrations'::regclass AND attnum > 0")
            have = {c["attname"] for c in cols}
            select = ["version", "name" if "name" in have else "NULL::text AS name"]
            if with_keys:
                select.append("idempotency_key" if "idempotency_key" in have else "NULL::text AS idempotency_key")
            rows = self.sql.catalog(target, f"SELECT {', '.join(select)} FROM supabase_migrations.schema_migrations "
                                            "ORDER BY version")
        except QueryError as e:
            raise InvalidInput(f"Failed to read the migrations history: {e}") from None
        return rows

    # ===== types and advisors ==================================================================
    def typescript_types(self, user_id: str, ref: str, schemas: list[str] | None, projects: ProjectsPort,
                         orgs: OrgsPort) -> dict[str, str]:
        target = self._target(user_id, ref, "database.read", projects, orgs)
        wanted = schemas or ["public"]
        try:
            return {"types": self.types.typescript(target.url(), wanted)}
        except PgMetaAnswer as e:  # postgres-meta answered with an error: its message, as Supabase shows it
            raise InvalidInput(f"Failed to generate types: {e}") from None

    def advisors(self, user_id: str, ref: str, category: str, lint_type: str | None, projects: ProjectsPort,
                 orgs: OrgsPort) -> dict[str, Any]:
        target = self._target(user_id, ref, "database.read", projects, orgs)
        exposed = [s.strip() for s in (projects.get_postgrest(user_id, ref).get("db_schema") or "public").split(",")
                   if s.strip()]
        out = []
        for lint in advisors.lints_for(category, lint_type):
            try:
                rows = self.sql.catalog(target, lint.sql, {"schemas": exposed})
            except QueryError as e:
                raise InvalidInput(f"Failed to run the {lint.name} lint: {e}") from None
            out += [advisors.lint_result(lint, r) for r in rows]
        return {"lints": out}

    # ===== storage =============================================================================
    def list_buckets(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort) -> list[dict[str, Any]]:
        target = self._target(user_id, ref, "database.read", projects, orgs)
        try:
            exists = self.sql.catalog(target, "SELECT to_regclass('storage.buckets') IS NOT NULL AS e")
            if not exists[0]["e"]:
                return []  # the project's Storage API has not created its tables yet
            rows = self.sql.catalog(target, "SELECT id::text, name::text, coalesce(owner::text, '') AS owner, "
                                            "created_at, updated_at, coalesce(public, false) AS public "
                                            "FROM storage.buckets ORDER BY name")
        except QueryError as e:
            raise InvalidInput(f"Failed to list buckets: {e}") from None
        return [{**r, "created_at": _iso(r["created_at"]), "updated_at": _iso(r["updated_at"])} for r in rows]

    def get_storage_config(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort) -> dict[str, Any]:
        project = projects.get_project(user_id, ref)
        orgs.authorize(user_id, project["organization_slug"], "projects.read")
        return self.configs.current(ref) or _copy(DEFAULT_STORAGE)

    def update_storage_config(self, user_id: str, ref: str, changes: dict[str, Any], projects: ProjectsPort,
                              orgs: OrgsPort) -> dict[str, Any]:
        project = projects.get_project(user_id, ref)
        orgs.authorize(user_id, project["organization_slug"], "projects.manage")
        config = self.configs.current(ref) or _copy(DEFAULT_STORAGE)
        if "fileSizeLimit" in changes:
            limit = changes["fileSizeLimit"]
            if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_FILE_SIZE:
                raise InvalidInput(f"fileSizeLimit: an integer from 0 to {MAX_FILE_SIZE}")
            config["fileSizeLimit"] = limit
        for feature, value in (changes.get("features") or {}).items():
            if feature not in config["features"]:
                raise InvalidInput(f"features.{feature}: unknown feature")
            if value.get("enabled"):
                # Not served by this platform's Storage: say so rather than store a lie.
                raise InvalidInput(f"features.{feature}: not available on this platform")
            config["features"][feature] = {**config["features"][feature], **value}
        if "external" in changes:
            config["external"] = dict(changes["external"])
        self.configs.save(ref, config, user_id)
        return config

    # ===== logs ================================================================================
    def query_logs(self, user_id: str, ref: str, sql: str | None, start: str | None, end: str | None,
                   projects: ProjectsPort, orgs: OrgsPort, functions: FunctionsPort) -> dict[str, Any]:
        project = projects.get_project(user_id, ref)
        orgs.authorize(user_id, project["organization_slug"], "database.read")
        try:
            q = logs.parse(sql)
        except logs.LogQueryError as e:
            raise InvalidInput(str(e)) from None
        until = _when(end, "iso_timestamp_end") or datetime.now(timezone.utc)
        since = _when(start, "iso_timestamp_start") or until - timedelta(hours=24)
        if since > until:
            raise InvalidInput("iso_timestamp_start: must be before iso_timestamp_end")
        records: list[dict[str, Any]] = []
        stored = [s for s in q.sources if s in logs.STORED_SOURCES]
        if stored:
            for r in self.dblog.recent(ref, since, until, logs.MAX_LIMIT * len(stored), stored):
                attrs = {"identifier": ref, **r["attributes"]}
                if r["source"] == "postgres_logs":
                    attrs.setdefault("parsed.error_severity", r["severity"])
                records.append({"id": r["id"], "timestamp": _micros(r["at"]), "event_message": r["message"],
                                "severity_text": r["severity"], "source": r["source"], "log_attributes": attrs})
        if {"function_logs", "function_edge_logs"} & set(q.sources):
            rows = functions.project_logs(user_id, ref, {"since": since.isoformat(), "until": until.isoformat(),
                                                         "limit": logs.MAX_LIMIT})
            for r in rows:
                invocation = r["kind"] == "invocation"
                attrs = {"function_id": r.get("slug"), "version": r.get("version"), "execution_id": r.get("request_id"),
                         "level": r["level"], "event_type": "Log" if not invocation else "Invocation"}
                if invocation:
                    attrs.update({"response.status_code": r.get("status"), "execution_time_ms": r.get("duration_ms"),
                                  "request.method": None})
                records.append({"id": f"{r.get('request_id') or ''}:{r['timestamp']}:{len(records)}",
                                "timestamp": r["timestamp"] * 1000, "event_message": r["message"],
                                "severity_text": r["level"].upper(),
                                "source": "function_edge_logs" if invocation else "function_logs",
                                "log_attributes": attrs})
        return {"result": logs.evaluate(q, records)}

    def record_logs(self, records: list[dict[str, Any]]) -> int:
        """The project edge's batch of request, auth and storage records (gateway/edge/requestlog.py).
        Records older than the retention are purged, at most once a minute."""
        clean = [r for r in records if isinstance(r, dict) and r.get("source") in logs.EDGE_SOURCES
                 and isinstance(r.get("ref"), str) and isinstance(r.get("attributes"), dict)]
        saved = self.dblog.append_many(clean) if clean else 0
        now = datetime.now(timezone.utc)
        if now - self._purged > timedelta(minutes=1):
            self._purged = now
            self.dblog.purge(now - timedelta(hours=self.log_retention_h))
        return saved

    # ===== table editor ========================================================================
    def list_tables(self, user_id: str, ref: str, schemas: list[str], projects: ProjectsPort,
                    orgs: OrgsPort) -> list[dict[str, Any]]:
        target = self._target(user_id, ref, "database.read", projects, orgs)
        return self._tables(target, schemas)

    def browse_rows(self, user_id: str, ref: str, schema: str, table: str, query: dict[str, Any],
                    projects: ProjectsPort, orgs: OrgsPort) -> dict[str, Any]:
        target = self._target(user_id, ref, "database.read", projects, orgs)
        t = self._table(target, schema, table)
        names = [c["name"] for c in t["columns"]]
        limit, offset = int(query.get("limit", 50)), int(query.get("offset", 0))
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit: from 1 to 1000; offset: 0 or more")
        pk = [c["name"] for c in t["columns"] if c["primary_key"]]
        order = query.get("order") or (pk[0] if pk else None)
        if order is not None and order not in names:
            raise InvalidInput(f"order: no column {order!r}")
        filters = [tuple(f) for f in query.get("filters") or []]
        rows = self._tables_run(target, lambda: tables.browse(schema, table, names, filters, order, limit, offset),
                                read_only=True)
        total = rows[0]["__total"] if rows else 0
        return {"columns": t["columns"], "primary_key": pk,
                "rows": [{k: v for k, v in r.items() if k != "__total"} for r in rows], "total": total,
                "limit": limit, "offset": offset}

    def change_rows(self, user_id: str, ref: str, schema: str, table: str, action: str, match: dict[str, Any],
                    values: dict[str, Any], projects: ProjectsPort, orgs: OrgsPort) -> dict[str, Any] | None:
        target = self._target(user_id, ref, "database.write", projects, orgs)
        t = self._table(target, schema, table)
        names = [c["name"] for c in t["columns"]]
        pk = [c["name"] for c in t["columns"] if c["primary_key"]]
        build = {"insert": lambda: tables.insert(schema, table, names, values),
                 "update": lambda: tables.update(schema, table, names, pk, match, values),
                 "delete": lambda: tables.delete(schema, table, pk, match)}.get(action)
        if build is None:
            raise InvalidInput("action: insert, update or delete")
        rows = self._tables_run(target, build)
        if action != "insert" and not rows:
            raise NotFound("no row with this primary key")
        return rows[0] if rows else None

    def create_table(self, user_id: str, ref: str, schema: str, name: str, columns: list[dict[str, Any]],
                     projects: ProjectsPort, orgs: OrgsPort) -> dict[str, Any]:
        target = self._target(user_id, ref, "database.write", projects, orgs)
        if not tables.NAME.match(schema):
            raise InvalidInput("schema: a schema name")
        self._tables_run(target, lambda: (tables.create(schema, name, columns), None))
        return self._table(target, schema, name)

    def _tables(self, target: Target, schemas: list[str]) -> list[dict[str, Any]]:
        try:
            return self.sql.catalog(target, tables.TABLES_SQL, {"schemas": schemas})
        except QueryError as e:
            raise InvalidInput(f"Failed to list tables: {e}") from None

    def _table(self, target: Target, schema: str, table: str) -> dict[str, Any]:
        for t in self._tables(target, [schema]):
            if t["name"] == table:
                return t
        raise NotFound(f"table {schema}.{table} not found")

    def _tables_run(self, target: Target, build: Any, read_only: bool = False) -> list[dict[str, Any]]:
        try:
            query, args = build()
        except tables.TableError as e:
            raise InvalidInput(str(e)) from None
        try:
            return self.sql.statement(target, query, args, read_only=read_only)
        except QueryError as e:
            raise InvalidInput(f"Failed to run sql query: {e}") from None

    # ===== saved SQL snippets (each user's own, per project) ====================================
    def list_snippets(self, user_id: str, ref: str, projects: ProjectsPort, orgs: OrgsPort) -> list[dict[str, Any]]:
        self._member(user_id, ref, "database.read", projects, orgs)
        return self.snippets.list(ref, user_id)

    def save_snippet(self, user_id: str, ref: str, snippet_id: str | None, name: str, sql: str,
                     projects: ProjectsPort, orgs: OrgsPort) -> dict[str, Any]:
        self._member(user_id, ref, "database.read", projects, orgs)
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 256:
            raise InvalidInput("name: 1 to 256 characters")
        if not isinstance(sql, str) or not 1 <= len(sql) <= 1024 * 1024:
            raise InvalidInput("sql: 1 character to 1 MB")
        saved = self.snippets.save(ref, user_id, snippet_id, name.strip(), sql)
        if saved is None:
            raise NotFound("snippet not found")
        return saved

    def delete_snippet(self, user_id: str, ref: str, snippet_id: str, projects: ProjectsPort, orgs: OrgsPort) -> None:
        self._member(user_id, ref, "database.read", projects, orgs)
        if not self.snippets.delete(ref, user_id, snippet_id):
            raise NotFound("snippet not found")

    def _member(self, user_id: str, ref: str, action: str, projects: ProjectsPort, orgs: OrgsPort) -> None:
        project = projects.get_project(user_id, ref)
        orgs.authorize(user_id, project["organization_slug"], action)

    # ===== helpers =============================================================================
    def _target(self, user_id: str, ref: str, action: str, projects: ProjectsPort, orgs: OrgsPort) -> Target:
        project = projects.get_project(user_id, ref)  # strangers: NotFound
        orgs.authorize(user_id, project["organization_slug"], action)
        conn = project.get("connection") or {}
        if project.get("status") != "ACTIVE_HEALTHY" or not conn.get("db_name"):
            raise Conflict(f"project {ref} is {project.get('status')}: its database is not available")
        creds = projects.get_tenant_credentials(ref)
        if not creds.get("db_pass"):
            raise NotFound(f"project {ref} not found")
        return Target(conn["db_host"], int(conn["db_port"]), conn["db_name"], conn["db_user"], creds["db_pass"])

    def _log_error(self, ref: str, user_id: str, message: str, kind: str, **extra: Any) -> None:
        self.dblog.append(ref, "ERROR", message, {"identifier": ref, "user": user_id, "kind": kind,
                                                  "parsed.error_severity": "ERROR", **extra})


def _copy(d: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(d)


def _iso(v: Any) -> str:
    return v if isinstance(v, str) else (v.isoformat() if v is not None else "")


def _micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _when(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name}: an ISO 8601 timestamp") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
