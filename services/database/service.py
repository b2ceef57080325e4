"""database nameko entrypoint: RPC for the gateway's database routes (SQL, migrations,
types, advisors, storage, logs). Translates only; rules live in the application."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, RemotePort, TimedRpcProxy

from .application import DatabaseApplication
from .bootstrap import build


class DatabaseService:
    name = "database"

    app: DatabaseApplication = ApplicationProvider(build)
    orgs = TimedRpcProxy("orgs")
    projects = TimedRpcProxy("projects")
    functions = TimedRpcProxy("functions")

    @rpc
    def health(self) -> dict[str, Any]:
        return {"service": self.name, "status": "ok"}

    @rpc(expected_exceptions=EXPECTED)
    def run_query(self, user_id: str, ref: str, query: str, parameters: list[Any] | None = None,
                  read_only: bool = False) -> list[dict[str, Any]]:
        return self.app.run_query(user_id, ref, query, parameters, read_only, RemotePort(self.projects),
                                  RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def list_migrations(self, user_id: str, ref: str) -> list[dict[str, Any]]:
        return self.app.list_migrations(user_id, ref, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def apply_migration(self, user_id: str, ref: str, body: dict[str, Any], idempotency_key: str | None = None,
                        apply: bool = True) -> dict[str, Any]:
        return self.app.apply_migration(user_id, ref, body, idempotency_key, apply, RemotePort(self.projects),
                                        RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def typescript_types(self, user_id: str, ref: str, schemas: list[str] | None = None) -> dict[str, str]:
        return self.app.typescript_types(user_id, ref, schemas, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def advisors(self, user_id: str, ref: str, category: str, lint_type: str | None = None) -> dict[str, Any]:
        return self.app.advisors(user_id, ref, category, lint_type, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def list_buckets(self, user_id: str, ref: str) -> list[dict[str, Any]]:
        return self.app.list_buckets(user_id, ref, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def get_storage_config(self, user_id: str, ref: str) -> dict[str, Any]:
        return self.app.get_storage_config(user_id, ref, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def update_storage_config(self, user_id: str, ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self.app.update_storage_config(user_id, ref, changes, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def query_logs(self, user_id: str, ref: str, sql: str | None = None, start: str | None = None,
                   end: str | None = None) -> dict[str, Any]:
        return self.app.query_logs(user_id, ref, sql, start, end, RemotePort(self.projects), RemotePort(self.orgs),
                                   RemotePort(self.functions))

    @rpc(expected_exceptions=EXPECTED)
    def record_logs(self, records: list[dict[str, Any]]) -> int:
        return self.app.record_logs(records)

    @rpc(expected_exceptions=EXPECTED)
    def list_tables(self, user_id: str, ref: str, schemas: list[str]) -> list[dict[str, Any]]:
        return self.app.list_tables(user_id, ref, schemas, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def browse_rows(self, user_id: str, ref: str, schema: str, table: str, query: dict[str, Any]) -> dict[str, Any]:
        return self.app.browse_rows(user_id, ref, schema, table, query, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def change_rows(self, user_id: str, ref: str, schema: str, table: str, action: str, match: dict[str, Any],
                    values: dict[str, Any]) -> dict[str, Any] | None:
        return self.app.change_rows(user_id, ref, schema, table, action, match, values, RemotePort(self.projects),
                                    RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def create_table(self, user_id: str, ref: str, schema: str, name: str, columns: list[dict[str, Any]]
                     ) -> dict[str, Any]:
        return self.app.create_table(user_id, ref, schema, name, columns, RemotePort(self.projects),
                                     RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def list_snippets(self, user_id: str, ref: str) -> list[dict[str, Any]]:
        return self.app.list_snippets(user_id, ref, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def save_snippet(self, user_id: str, ref: str, snippet_id: str | None, name: str, sql: str) -> dict[str, Any]:
        return self.app.save_snippet(user_id, ref, snippet_id, name, sql, RemotePort(self.projects), RemotePort(self.orgs))

    @rpc(expected_exceptions=EXPECTED)
    def delete_snippet(self, user_id: str, ref: str, snippet_id: str) -> None:
        self.app.delete_snippet(user_id, ref, snippet_id, RemotePort(self.projects), RemotePort(self.orgs))
