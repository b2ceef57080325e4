"""Edge function routes of the gateway: the Management API's functions and secrets (v1),
and platform routes for what v1 lacks (versions, rollback, logs). Plain handler functions
over the functions service's RPC; the service authorises (through projects and orgs) and
decides. Invocations are not here: see gateway/functions_proxy.py.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any
from urllib.parse import quote

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Request, Response

from .app import json_response
from .errors import HttpError
from .limits import json_body
from .limits import load_object as _load
from .routing import route

Ctx = dict[str, Any]
MAX_DEPLOY = 25 * 1024 * 1024  # the 20 MB bundle limit plus multipart overhead
MAX_JSON = 2 * 1024 * 1024
STATUSES = ["ACTIVE", "REMOVED", "THROTTLED"]


# ---- schemas (names and fields as in the Management API spec) -----------------------------------

class FunctionResponse(Schema):
    id = fields.String(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    version = fields.Integer(required=True)
    created_at = fields.Integer(required=True, metadata={"description": "epoch milliseconds"})
    updated_at = fields.Integer(required=True, metadata={"description": "epoch milliseconds"})
    verify_jwt = fields.Boolean()
    import_map = fields.Boolean()
    entrypoint_path = fields.String()
    import_map_path = fields.String()
    ezbr_sha256 = fields.String(metadata={"description": "SHA-256 of the stored source bundle"})


class BulkUpdateFunctionResponse(Schema):
    functions = fields.List(fields.Nested(FunctionResponse), required=True)


class V1CreateFunctionBody(Schema):
    class Meta:
        unknown = RAISE

    slug = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z][A-Za-z0-9_-]*$"))
    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    body = fields.String(required=True, validate=validate.Length(min=1, max=MAX_JSON))
    verify_jwt = fields.Boolean()


class V1UpdateFunctionBody(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=validate.Length(min=1, max=256))
    body = fields.String(validate=validate.Length(min=1, max=MAX_JSON))
    verify_jwt = fields.Boolean()


class BulkUpdateItem(Schema):
    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True)
    slug = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z][A-Za-z0-9_-]*$"))
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    version = fields.Integer(required=True)
    verify_jwt = fields.Boolean()


class DeployMetadata(Schema):
    class Meta:
        unknown = RAISE

    entrypoint_path = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    import_map_path = fields.String(allow_none=True, validate=validate.Length(max=1024))
    static_patterns = fields.List(fields.String(validate=validate.Length(max=1024)), validate=validate.Length(max=100))
    verify_jwt = fields.Boolean()
    name = fields.String(validate=validate.Length(max=256))


class SecretResponse(Schema):
    name = fields.String(required=True)
    value = fields.String(required=True, metadata={"description": "SHA-256 of the value, never the value"})
    updated_at = fields.String()


class FunctionVersion(Schema):
    version = fields.Integer(required=True)
    active = fields.Boolean(required=True, metadata={"description": "The version that answers invocations"})
    bundle_sha256 = fields.String(required=True)
    size_bytes = fields.Integer(required=True)
    entrypoint_path = fields.String(required=True)
    import_map_path = fields.String(allow_none=True)
    static_patterns = fields.List(fields.String(), required=True)
    deployed_at_ms = fields.Integer(required=True)


class Rollback(Schema):
    class Meta:
        unknown = RAISE

    version = fields.Integer(validate=validate.Range(min=1), metadata={"description": "Default: the version before the live one"})


class FunctionLog(Schema):
    timestamp = fields.Integer(required=True, metadata={"description": "epoch milliseconds"})
    at = fields.String(required=True)
    level = fields.String(required=True, validate=validate.OneOf(["debug", "info", "warn", "error"]))
    kind = fields.String(required=True, validate=validate.OneOf(["log", "invocation"]),
                         metadata={"description": "a console line, or the record of one invocation"})
    version = fields.Integer(allow_none=True)
    request_id = fields.String(allow_none=True)
    status = fields.Integer(allow_none=True)
    duration_ms = fields.Float(allow_none=True)
    message = fields.String(required=True)


# ---- helpers -------------------------------------------------------------------------------------

def _json_body(request: Request) -> Any:
    return json_body(request, MAX_JSON * 2)


def _bool_arg(request: Request, name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise HttpError.invalid({name: ["true or false"]})
    return raw.lower() == "true"


def _pack_file(name: str, data: bytes) -> list[str]:
    return [name, base64.b64encode(zlib.compress(data)).decode()]


def _dump_fn(fn: dict[str, Any], ref: str) -> dict[str, Any]:
    out = dict(FunctionResponse().dump(fn))
    # As Supabase answers: file:// URLs under the deployment's folder (clients such as the
    # MCP server parse them with fileURLToPath and strip that prefix again).
    for key in ("entrypoint_path", "import_map_path"):
        if out.get(key) and not str(out[key]).startswith("file://"):
            out[key] = f"file:///tmp/user_fn_{ref}_{out['id']}_{out['version']}/source/{quote(str(out[key]).lstrip('/'))}"
    return out


# ---- v1: functions -------------------------------------------------------------------------------

@route("GET", "/v1/projects/<ref>/functions", summary="List all functions", tag="v1",
       response=FunctionResponse, many=True)
def v1_list_functions(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response([_dump_fn(f, ref) for f in gw.services.functions.list_functions(me.id, ref)])


@route("POST", "/v1/projects/<ref>/functions/deploy", summary="Deploy a function (multipart: metadata + files)",
       tag="v1", response=FunctionResponse, status=201,
       query={"slug": "the function's slug", "bundleOnly": "true: store the version without making it live"})
def v1_deploy_function(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    slug = request.args.get("slug")
    if not slug:
        raise HttpError.invalid({"slug": ["Missing data for required field."]})
    bundle_only = bool(_bool_arg(request, "bundleOnly"))
    if not (request.mimetype or "").startswith("multipart/form-data"):
        raise HttpError(415, "send multipart/form-data: a `metadata` JSON part and one `file` part per source file")
    if request.content_length and request.content_length > MAX_DEPLOY:
        raise HttpError(413, f"deploy larger than {MAX_DEPLOY} bytes")
    request.max_content_length = MAX_DEPLOY
    request.max_form_memory_size = MAX_JSON
    # Parse the whole form: parts may come in any order, and metadata may be a field or a file.
    raw_meta: str | bytes | None = request.form.get("metadata")
    if raw_meta is None and "metadata" in request.files:
        raw_meta = request.files["metadata"].read(MAX_JSON + 1)
    if raw_meta is None:
        raise HttpError.invalid({"metadata": ["Missing data for required field."]})
    try:
        meta_data = json.loads(raw_meta)
    except ValueError as e:
        raise HttpError.invalid({"metadata": [f"not JSON: {e}"]}) from None
    metadata = _load(DeployMetadata(), meta_data)
    uploads: list[FileStorage] = request.files.getlist("file")
    if not uploads:
        raise HttpError.invalid({"file": ["at least one source file (a `file` part whose filename is its path)"]})
    files = []
    for up in uploads:
        if not up.filename:
            raise HttpError.invalid({"file": ["every file part needs a filename (its path in the bundle)"]})
        files.append(_pack_file(up.filename, up.read()))
    fn = gw.services.functions.deploy_function(me.id, ref, slug, metadata, files, bundle_only, ctx)
    return json_response(_dump_fn(fn, ref), 201)


@route("POST", "/v1/projects/<ref>/functions", summary="Create a function (its body as one TypeScript file)",
       tag="v1", body=V1CreateFunctionBody, response=FunctionResponse, status=201,
       query={"slug": "slug (or in the body)", "name": "name (or in the body)", "verify_jwt": "true or false"})
def v1_create_function(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    if request.mimetype == "application/vnd.denoland.eszip":
        raise HttpError(415, "eszip bundles are not supported: deploy the sources with POST /v1/projects/{ref}/functions/deploy")
    data = _json_body(request)
    if isinstance(data, dict):
        for key in ("slug", "name"):
            if key not in data and request.args.get(key):
                data[key] = request.args[key]
        if "verify_jwt" not in data and _bool_arg(request, "verify_jwt") is not None:
            data["verify_jwt"] = _bool_arg(request, "verify_jwt")
    body = _load(V1CreateFunctionBody(), data)
    return json_response(_dump_fn(gw.services.functions.create_function(me.id, ref, body, ctx), ref), 201)


@route("PUT", "/v1/projects/<ref>/functions", summary="Bulk update functions (make deployed versions live)",
       tag="v1", response=BulkUpdateFunctionResponse)
def v1_bulk_update_functions(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _json_body(request)
    if not isinstance(data, list) or not data:
        raise HttpError(400, "request body must be a non-empty JSON array of functions")
    try:
        items = [dict(x) for x in BulkUpdateItem(many=True).load(data)]
    except ValidationError as e:
        raise HttpError.invalid(e.messages) from None
    fns = gw.services.functions.bulk_update_functions(me.id, ref, items, ctx)
    return json_response({"functions": [_dump_fn(f, ref) for f in fns]})


@route("GET", "/v1/projects/<ref>/functions/<function_slug>", summary="Retrieve a function", tag="v1",
       response=FunctionResponse)
def v1_get_function(gw: Any, request: Request, ctx: Ctx, ref: str, function_slug: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(_dump_fn(gw.services.functions.get_function(me.id, ref, function_slug), ref))


@route("PATCH", "/v1/projects/<ref>/functions/<function_slug>", summary="Update a function (name, verify_jwt, body)",
       tag="v1", body=V1UpdateFunctionBody, response=FunctionResponse,
       query={"name": "new name", "verify_jwt": "true or false"})
def v1_update_function(gw: Any, request: Request, ctx: Ctx, ref: str, function_slug: str) -> Response:
    me = gw.caller(request, ctx)
    data = _json_body(request) if request.get_data(cache=True) else {}
    if isinstance(data, dict):
        if "name" not in data and request.args.get("name"):
            data["name"] = request.args["name"]
        if "verify_jwt" not in data and _bool_arg(request, "verify_jwt") is not None:
            data["verify_jwt"] = _bool_arg(request, "verify_jwt")
    changes = _load(V1UpdateFunctionBody(), data)
    if request.args.get("slug") not in (None, function_slug):
        changes["slug"] = request.args["slug"]
    return json_response(_dump_fn(gw.services.functions.update_function(me.id, ref, function_slug, changes, ctx), ref))


@route("DELETE", "/v1/projects/<ref>/functions/<function_slug>", summary="Delete a function", tag="v1")
def v1_delete_function(gw: Any, request: Request, ctx: Ctx, ref: str, function_slug: str) -> Response:
    me = gw.caller(request, ctx)
    gw.services.functions.delete_function(me.id, ref, function_slug, ctx)
    return Response(status=200)


@route("GET", "/v1/projects/<ref>/functions/<function_slug>/body",
       summary="The live version's source files (JSON; multipart/form-data when asked by Accept)", tag="v1")
def v1_get_function_body(gw: Any, request: Request, ctx: Ctx, ref: str, function_slug: str) -> Response:
    me = gw.caller(request, ctx)
    body = gw.services.functions.get_function_body(me.id, ref, function_slug)
    files = [(f["name"], zlib.decompress(base64.b64decode(f["content"]))) for f in body["files"]]
    meta = {"version": body["version"], "entrypoint_path": body["entrypoint_path"],
            "import_map_path": body["import_map_path"], "static_patterns": body["static_patterns"]}
    if "multipart/form-data" in (request.headers.get("Accept") or ""):
        return _multipart(meta, files)
    out_files = []
    for name, data in files:
        try:
            out_files.append({"name": name, "content": data.decode("utf-8")})
        except UnicodeDecodeError:
            out_files.append({"name": name, "content_base64": base64.b64encode(data).decode()})
    return json_response({**meta, "files": out_files})


def _multipart(meta: dict[str, Any], files: list[tuple[str, bytes]]) -> Response:
    """The same shape a deploy takes: a `metadata` part, then one `file` part per source."""
    boundary = "sb-" + base64.b32encode(zlib.crc32(repr(meta).encode()).to_bytes(4, "big")).decode().strip("=")
    boundary += "-" + str(len(files))
    parts = [(b'Content-Disposition: form-data; name="metadata"\r\nContent-Type: application/json\r\n\r\n',
              json.dumps(meta).encode())]
    for name, data in files:
        safe = name.replace('"', "%22")
        parts.append((f'Content-Disposition: form-data; name="file"; filename="{safe}"\r\n'
                      "Content-Type: application/octet-stream\r\n\r\n".encode(), data))
    out = b"".join(b"--" + boundary.encode() + b"\r\n" + head + data + b"\r\n" for head, data in parts)
    out += b"--" + boundary.encode() + b"--\r\n"
    return Response(out, status=200, mimetype=f"multipart/form-data; boundary={boundary}")


# ---- v1: secrets ---------------------------------------------------------------------------------

@route("GET", "/v1/projects/<ref>/secrets", summary="List all secrets (names and SHA-256 digests, never values)",
       tag="v1", response=SecretResponse, many=True)
def v1_list_secrets(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(SecretResponse(many=True).dump(gw.services.functions.list_secrets(me.id, ref)))


@route("POST", "/v1/projects/<ref>/secrets", summary="Bulk create secrets (JSON array of {name, value})",
       tag="v1", status=201)
def v1_create_secrets(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _json_body(request)
    if not isinstance(data, list) or not data or not all(isinstance(x, dict) for x in data):
        raise HttpError(400, "request body must be a non-empty JSON array of {name, value}")
    items = []
    for i, x in enumerate(data):
        unknown = set(x) - {"name", "value"}
        if unknown:
            raise HttpError.invalid({f"{i}.{sorted(unknown)[0]}": ["Unknown field."]})
        items.append({"name": x.get("name"), "value": x.get("value")})
    gw.services.functions.set_secrets(me.id, ref, items, ctx)
    return Response(status=201)


@route("DELETE", "/v1/projects/<ref>/secrets", summary="Bulk delete secrets (JSON array of names)", tag="v1")
def v1_delete_secrets(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    me = gw.caller(request, ctx)
    data = _json_body(request)
    if not isinstance(data, list) or not data or not all(isinstance(x, str) for x in data):
        raise HttpError(400, "request body must be a non-empty JSON array of secret names")
    gw.services.functions.delete_secrets(me.id, ref, data, ctx)
    return Response(status=200)


# ---- platform: versions, rollback, logs ----------------------------------------------------------

@route("GET", "/platform/projects/<ref>/functions/<function_slug>/versions",
       summary="Every deployed version of a function, newest first", tag="functions", response=FunctionVersion,
       many=True)
def list_function_versions(gw: Any, request: Request, ctx: Ctx, ref: str, function_slug: str) -> Response:
    me = gw.caller(request, ctx)
    return json_response(FunctionVersion(many=True).dump(
        gw.services.functions.list_function_versions(me.id, ref, function_slug)))


@route("POST", "/platform/projects/<ref>/functions/<function_slug>/rollback",
       summary="Make an earlier version live again (default: the one before the live one)", tag="functions",
       body=Rollback, response=FunctionResponse)
def rollback_function(gw: Any, request: Request, ctx: Ctx, ref: str, function_slug: str) -> Response:
    me = gw.caller(request, ctx)
    data = _json_body(request) if request.get_data(cache=True) else {}
    version = _load(Rollback(), data).get("version")
    return json_response(_dump_fn(gw.services.functions.rollback_function(me.id, ref, function_slug, version, ctx), ref))


@route("GET", "/platform/projects/<ref>/functions/<function_slug>/logs",
       summary="A function's console output and invocation records, newest first", tag="functions",
       response=FunctionLog, many=True,
       query={"since": "from this time (ISO 8601 or epoch ms)", "until": "before this time",
              "level": "at least this level: debug, info, warn, error", "kind": "log or invocation",
              "request_id": "one invocation's lines", "limit": "at most this many (1-1000, default 100)"})
def function_logs(gw: Any, request: Request, ctx: Ctx, ref: str, function_slug: str) -> Response:
    me = gw.caller(request, ctx)
    query: dict[str, Any] = {k: request.args[k] for k in ("since", "until", "level", "kind", "request_id")
                             if request.args.get(k)}
    if request.args.get("limit"):
        raw = request.args["limit"]
        if not raw.isdigit():
            raise HttpError.invalid({"limit": ["an integer from 1 to 1000"]})
        query["limit"] = int(raw)
    logs = gw.services.functions.function_logs(me.id, ref, function_slug, query)
    return json_response(FunctionLog(many=True).dump(logs))
