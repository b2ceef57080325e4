"""Database routes of the gateway (Management API v1): SQL, migrations, TypeScript types,
advisors, storage buckets and settings, the logs explorer, legacy API keys. Plain handler
functions over the database service's RPC; the service authorises and runs the SQL as the
project's own database login."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate
from werkzeug.wrappers import Request, Response

from .app import json_response
from .errors import HttpError
from .limits import json_body, load_object
from .routing import route

Ctx = dict[str, Any]
MAX_SQL = 1024 * 1024


# ---- schemas (names and fields as in the Management API spec) -----------------------------------

class V1RunQueryBody(Schema):
    class Meta:
        unknown = RAISE

    query = fields.String(required=True, validate=validate.Length(min=1, max=MAX_SQL))
    parameters = fields.List(fields.Raw(allow_none=True), validate=validate.Length(max=1000))
    read_only = fields.Boolean()


class V1ReadOnlyQueryBody(Schema):
    class Meta:
        unknown = RAISE

    query = fields.String(required=True, validate=validate.Length(min=1, max=MAX_SQL))
    parameters = fields.List(fields.Raw(allow_none=True), validate=validate.Length(max=1000))


class V1CreateMigrationBody(Schema):
    class Meta:
        unknown = RAISE

    query = fields.String(required=True, validate=validate.Length(min=1, max=MAX_SQL))
    name = fields.String(validate=validate.Length(max=256))
    rollback = fields.String(validate=validate.Length(max=MAX_SQL))


class V1Migration(Schema):
    version = fields.String(required=True)
    name = fields.String(allow_none=True)


class TypescriptResponse(Schema):
    types = fields.String(required=True)


class V1StorageBucketResponse(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    owner = fields.String(required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    public = fields.Boolean(required=True)


class _Enabled(Schema):
    class Meta:
        unknown = RAISE

    enabled = fields.Boolean(required=True)


class _Iceberg(_Enabled):
    maxNamespaces = fields.Integer(required=True, validate=validate.Range(min=0))
    maxTables = fields.Integer(required=True, validate=validate.Range(min=0))
    maxCatalogs = fields.Integer(required=True, validate=validate.Range(min=0))


class _Vector(_Enabled):
    maxBuckets = fields.Integer(required=True, validate=validate.Range(min=0))
    maxIndexes = fields.Integer(required=True, validate=validate.Range(min=0))


class _Features(Schema):
    class Meta:
        unknown = RAISE

    imageTransformation = fields.Nested(_Enabled)
    s3Protocol = fields.Nested(_Enabled)
    icebergCatalog = fields.Nested(_Iceberg)
    vectorBuckets = fields.Nested(_Vector)


class _External(Schema):
    class Meta:
        unknown = RAISE

    upstreamTarget = fields.String(required=True, validate=validate.OneOf(["main", "canary"]))


class UpdateStorageConfigBody(Schema):
    class Meta:
        unknown = RAISE

    fileSizeLimit = fields.Integer(strict=True, validate=validate.Range(min=0, max=536870912000))
    features = fields.Nested(_Features)
    external = fields.Nested(_External)


class StorageConfigResponse(Schema):
    fileSizeLimit = fields.Integer(required=True)
    features = fields.Dict(required=True)
    capabilities = fields.Dict(required=True)
    external = fields.Dict(required=True)
    migrationVersion = fields.String(required=True)
    databasePoolMode = fields.String(required=True)


class AnalyticsResponse(Schema):
    result = fields.List(fields.Dict(), required=True)


class V1ProjectAdvisorsResponse(Schema):
    lints = fields.List(fields.Dict(), required=True)


class LegacyApiKeysResponse(Schema):
    enabled = fields.Boolean(required=True)


# ---- helpers -------------------------------------------------------------------------------------

def _body(request: Request, schema: Schema) -> dict[str, Any]:
    return load_object(schema, json_body(request, MAX_SQL * 2))


# ---- v1: SQL and migrations ----------------------------------------------------------------------

@route("POST", "/v1/projects/<ref>/database/query", summary="[Beta] Run sql query", tag="v1", body=V1RunQueryBody,
       status=201)
def v1_run_query(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, V1RunQueryBody())
    rows = gw.services.database.run_query(me.id, ref, data["query"], data.get("parameters"),
                                          bool(data.get("read_only")))
    return json_response(rows, 201)


@route("POST", "/v1/projects/<ref>/database/query/read-only",
       summary="[Beta] Run a read-only sql query (one statement, in a read-only transaction)", tag="v1",
       body=V1ReadOnlyQueryBody, status=201)
def v1_read_only_query(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, V1ReadOnlyQueryBody())
    return json_response(gw.services.database.run_query(me.id, ref, data["query"], data.get("parameters"), True), 201)


@route("GET", "/v1/projects/<ref>/database/migrations", summary="List applied migration versions", tag="v1",
       response=V1Migration, many=True)
def v1_list_migrations(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(V1Migration(many=True).dump(gw.services.database.list_migrations(me.id, ref)))


@route("POST", "/v1/projects/<ref>/database/migrations",
       summary="Apply a database migration (one transaction, recorded in supabase_migrations.schema_migrations)",
       tag="v1", body=V1CreateMigrationBody)
def v1_apply_migration(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, V1CreateMigrationBody())
    gw.services.database.apply_migration(me.id, ref, data, request.headers.get("Idempotency-Key"), True)
    return Response(status=200)


@route("PUT", "/v1/projects/<ref>/database/migrations", summary="Upsert a database migration without applying",
       tag="v1", body=V1CreateMigrationBody)
def v1_upsert_migration(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, V1CreateMigrationBody())
    gw.services.database.apply_migration(me.id, ref, data, request.headers.get("Idempotency-Key"), False)
    return Response(status=200)


# ---- v1: types, advisors -------------------------------------------------------------------------

@route("GET", "/v1/projects/<ref>/types/typescript", summary="Generate TypeScript types", tag="v1",
       response=TypescriptResponse, query={"included_schemas": "comma-separated schemas (default: public)"})
def v1_typescript_types(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    raw = request.args.get("included_schemas") or "public"
    schemas = [s.strip() for s in raw.split(",") if s.strip()]
    if not schemas or len(schemas) > 20 or any(len(s) > 63 for s in schemas):
        raise HttpError.invalid({"included_schemas": ["one to 20 schema names"]})
    return json_response(gw.services.database.typescript_types(me.id, ref, schemas))


def _lint_type(request: Request) -> str | None:
    lint_type = request.args.get("lint_type")
    if lint_type not in (None, "sql"):
        raise HttpError.invalid({"lint_type": ["must be sql"]})
    return lint_type


@route("GET", "/v1/projects/<ref>/advisors/security", summary="Gets project security advisors", tag="v1",
       response=V1ProjectAdvisorsResponse, query={"lint_type": "sql"})
def v1_security_advisors(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(gw.services.database.advisors(me.id, ref, "SECURITY", _lint_type(request)))


@route("GET", "/v1/projects/<ref>/advisors/performance", summary="Gets project performance advisors", tag="v1",
       response=V1ProjectAdvisorsResponse)
def v1_performance_advisors(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(gw.services.database.advisors(me.id, ref, "PERFORMANCE", None))


# ---- v1: storage ---------------------------------------------------------------------------------

@route("GET", "/v1/projects/<ref>/storage/buckets", summary="Lists all buckets", tag="v1",
       response=V1StorageBucketResponse, many=True)
def v1_list_buckets(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(V1StorageBucketResponse(many=True).dump(gw.services.database.list_buckets(me.id, ref)))


@route("GET", "/v1/projects/<ref>/config/storage", summary="Gets project's storage config", tag="v1",
       response=StorageConfigResponse)
def v1_get_storage_config(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(gw.services.database.get_storage_config(me.id, ref))


@route("PATCH", "/v1/projects/<ref>/config/storage", summary="Updates project's storage config", tag="v1",
       body=UpdateStorageConfigBody)
def v1_update_storage_config(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, UpdateStorageConfigBody())
    gw.services.database.update_storage_config(me.id, ref, data)
    return Response(status=200)


# ---- v1: logs, legacy keys -----------------------------------------------------------------------

LOG_QUERY = {"sql": "select … from logs where source = '<source>' order by timestamp desc limit <n>",
             "iso_timestamp_start": "from (ISO 8601; default: 24 h before the end)",
             "iso_timestamp_end": "until (ISO 8601; default: now)"}


@route("GET", "/v1/projects/<ref>/analytics/endpoints/logs.all", summary="Gets project's logs", tag="v1",
       response=AnalyticsResponse, query=LOG_QUERY)
def v1_logs_all(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    a = request.args
    return json_response(gw.services.database.query_logs(me.id, ref, a.get("sql"), a.get("iso_timestamp_start"),
                                                         a.get("iso_timestamp_end")))


@route("GET", "/v1/projects/<ref>/analytics/endpoints/logs",
       summary="Gets project's logs (the path the MCP server calls; same as logs.all)", tag="v1",
       response=AnalyticsResponse, query=LOG_QUERY)
def v1_logs(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    return v1_logs_all(gw, request, ctx, ref)


@route("GET", "/v1/projects/<ref>/api-keys/legacy", summary="Whether the legacy (JWT) API keys are enabled",
       tag="v1", response=LegacyApiKeysResponse)
def v1_legacy_api_keys(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    gw.caller(request, ctx)  # membership was checked before the handler; anon and service_role are the only keys
    return json_response({"enabled": True})


# ---- platform: the table editor ------------------------------------------------------------------

class Column(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=63))
    type = fields.String(required=True, validate=validate.Length(min=1, max=40))
    nullable = fields.Boolean()
    primary_key = fields.Boolean()
    identity = fields.Boolean()


class NewTable(Schema):
    class Meta:
        unknown = RAISE

    schema = fields.String(load_default="public", validate=validate.Length(min=1, max=63))
    name = fields.String(required=True, validate=validate.Length(min=1, max=63))
    columns = fields.List(fields.Nested(Column), required=True, validate=validate.Length(min=1, max=200))


class RowChange(Schema):
    class Meta:
        unknown = RAISE

    match = fields.Dict(keys=fields.String(), load_default=dict, metadata={"description": "the row's primary key"})
    values = fields.Dict(keys=fields.String(), load_default=dict)


@route("GET", "/platform/projects/<ref>/database/tables",
       summary="Tables with their columns, RLS policies and foreign keys (the schema visualizer draws these)",
       tag="database", query={"schema": "comma-separated schemas (default: public)"})
def list_tables(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    schemas = [s.strip() for s in (request.args.get("schema") or "public").split(",") if s.strip()][:20]
    return json_response(gw.services.database.list_tables(me.id, ref, schemas))


@route("POST", "/platform/projects/<ref>/database/tables", summary="Create a table", tag="database", body=NewTable,
       status=201)
def create_table(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, NewTable())
    return json_response(gw.services.database.create_table(me.id, ref, data["schema"], data["name"],
                                                           [dict(c) for c in data["columns"]]), 201)


@route("GET", "/platform/projects/<ref>/database/tables/<schema>/<table>/rows",
       summary="A page of a table's rows, filtered and ordered", tag="database",
       query={"limit": "1-1000 (default 50)", "offset": "rows to skip", "order": "column (default: primary key)",
              "filter": "repeated: <column>.<op>.<value>, op one of eq, neq, gt, gte, lt, lte, like, ilike, is (null, not_null)"})
def browse_rows(gw: Any, request: Request, ctx: Ctx, ref: str, schema: str, table: str) -> Response:
    me = gw.caller(request, ctx)
    query: dict[str, Any] = {}
    for key in ("limit", "offset"):
        raw = request.args.get(key)
        if raw is not None:
            if not raw.isdigit():
                raise HttpError.invalid({key: ["a whole number"]})
            query[key] = int(raw)
    if request.args.get("order"):
        query["order"] = request.args["order"]
    filters = []
    for raw in request.args.getlist("filter"):
        col, sep1, rest = raw.partition(".")
        op, sep2, value = rest.partition(".")
        if not (sep1 and sep2 and col and op):
            raise HttpError.invalid({"filter": ["<column>.<op>.<value>"]})
        filters.append([col, op, value])
    query["filters"] = filters
    return json_response(gw.services.database.browse_rows(me.id, ref, schema, table, query))


def _change(gw: Any, request: Request, ctx: Ctx, ref: str, schema: str, table: str, action: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, RowChange())
    row = gw.services.database.change_rows(me.id, ref, schema, table, action, data["match"], data["values"])
    return json_response(row, 201 if action == "insert" else 200)


@route("POST", "/platform/projects/<ref>/database/tables/<schema>/<table>/rows", summary="Insert a row",
       tag="database", body=RowChange, status=201)
def insert_row(gw: Any, request: Request, ctx: Ctx, ref: str, schema: str, table: str) -> Response:
    return _change(gw, request, ctx, ref, schema, table, "insert")


@route("PATCH", "/platform/projects/<ref>/database/tables/<schema>/<table>/rows",
       summary="Change the row with this primary key (match)", tag="database", body=RowChange)
def update_row(gw: Any, request: Request, ctx: Ctx, ref: str, schema: str, table: str) -> Response:
    return _change(gw, request, ctx, ref, schema, table, "update")


@route("DELETE", "/platform/projects/<ref>/database/tables/<schema>/<table>/rows",
       summary="Delete the row with this primary key (match)", tag="database", body=RowChange)
def delete_row(gw: Any, request: Request, ctx: Ctx, ref: str, schema: str, table: str) -> Response:
    return _change(gw, request, ctx, ref, schema, table, "delete")


# ---- platform: saved SQL snippets (each user's own) ----------------------------------------------

class Snippet(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    sql = fields.String(required=True, validate=validate.Length(min=1, max=MAX_SQL))


class SnippetResponse(Snippet):
    id = fields.String(required=True)
    updated_at = fields.String(required=True)


def _snippet_id(raw: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise HttpError(404, "snippet not found") from None


@route("GET", "/platform/projects/<ref>/database/snippets", summary="Your saved SQL snippets in this project",
       tag="database", response=SnippetResponse, many=True)
def list_snippets(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(gw.services.database.list_snippets(me.id, ref))


@route("POST", "/platform/projects/<ref>/database/snippets", summary="Save a SQL snippet (yours only)",
       tag="database", body=Snippet, response=SnippetResponse, status=201)
def create_snippet(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, Snippet())
    return json_response(gw.services.database.save_snippet(me.id, ref, None, data["name"], data["sql"]), 201)


@route("PUT", "/platform/projects/<ref>/database/snippets/<snippet_id>", summary="Change one of your snippets",
       tag="database", body=Snippet, response=SnippetResponse)
def update_snippet(gw: Any, request: Request, ctx: Ctx, ref: str, snippet_id: str) -> Response:
    me = gw.caller(request, ctx)
    data = _body(request, Snippet())
    return json_response(gw.services.database.save_snippet(me.id, ref, _snippet_id(snippet_id), data["name"],
                                                           data["sql"]))


@route("DELETE", "/platform/projects/<ref>/database/snippets/<snippet_id>", summary="Delete one of your snippets",
       tag="database", status=204)
def delete_snippet(gw: Any, request: Request, ctx: Ctx, ref: str, snippet_id: str) -> Response:
    me = gw.caller(request, ctx)
    gw.services.database.delete_snippet(me.id, ref, _snippet_id(snippet_id))
    return json_response(None, 204)
