"""The project's Storage API (`<project URL>/storage/v1/…`), storage-js-compatible, run inside
the project edge (an upstream, `prefix = "storage/v1"`).

Metadata lives in the tenant's `storage.buckets` / `storage.objects` (Supabase's columns);
as Supabase Storage does, every statement about the caller's objects runs as the caller's
role (anon, authenticated, service_role) with `request.jwt.claims` set, so the tenant's RLS
policies on storage.objects decide (service_role bypasses them); bucket limits are read as
the storage login itself. Object bytes go to the project's bucket in the platform's object
store (local disk or S3), under `objects/<version>`: a move renames a row and copies no bytes.
Uploads are streamed to a temporary file (capped at the bucket's file_size_limit and
storage_max_upload_mb), downloads are streamed out.

Imports aiohttp, PyJWT, psycopg, the standard library, the shared object store and the
edge's own modules (apis.py, app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote, unquote

import jwt
import psycopg
from aiohttp import BodyPartReader, web
from multidict import CIMultiDict
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from services.shared.objectstore import ObjectStore, StorageError, make_object_store, state_path
from services.shared.settings import Settings

from .apis import Caller, Gone, OpenPaths, TenantDirectory, bearer, decode, json_response
from .app import Upstreamed

log = logging.getLogger("gateway.edge.storage")

BUCKET_ID = re.compile(r"^[A-Za-z0-9_.\- ]{1,100}$")
CHUNK = 256 * 1024
MAX_JSON = 1024 * 1024
SORT_COLUMNS = {"name", "updated_at", "created_at", "last_accessed_at"}
SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3}


class StorageApiError(Exception):
    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message

    def response(self) -> web.Response:
        return json_response(self.status, {"statusCode": str(self.status), "error": self.error, "message": self.message})


def not_found(what: str = "Object") -> StorageApiError:
    return StorageApiError(404, "not_found", f"{what} not found")


def bucket_of_store(ref: str) -> str:
    return f"sp-{ref}"  # the provisioner's bucket of the project (drivers/local.py:bucket_name)


def check_name(name: str) -> str:
    """An object name as Supabase Storage accepts it: a relative path without empty, `.` or
    `..` segments or control characters."""
    if (not name or len(name) > 1024 or name.startswith("/") or any(ord(c) < 32 for c in name)
            or any(part in ("", ".", "..") for part in name.split("/"))):
        raise StorageApiError(400, "invalid_key", f"Invalid key: {name}")
    return name


def parse_size(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise StorageApiError(400, "invalid_request", "file_size_limit must be a number or a size like 10MB")
    if isinstance(value, (int, float)):
        return int(value) if value > 0 else None
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$", str(value).lower())
    if not m:
        raise StorageApiError(400, "invalid_request", "file_size_limit must be a number or a size like 10MB")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2) or "b"])


def mime_allowed(mime: str, allowed: list[str] | None) -> bool:
    if not allowed:
        return True
    base = mime.split(";", 1)[0].strip().lower()
    for pattern in allowed:
        p = pattern.strip().lower()
        if p == base or (p.endswith("/*") and base.startswith(p[:-1])) or p == "*/*":
            return True
    return False


def _iso(value: Any) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else None


def _rls_error(exc: psycopg.Error) -> StorageApiError | None:
    text = str(exc)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege) or "row-level security" in text:
        return StorageApiError(403, "Unauthorized", "new row violates row-level security policy")
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return StorageApiError(409, "Duplicate", "The resource already exists")
    return None


class StorageUpstream:
    prefix = "storage/v1"

    def __init__(self, settings: Settings, directory: TenantDirectory, store: ObjectStore | None = None):
        self.settings = settings
        self.directory = directory.acquire()
        self.store = store or make_object_store(settings)
        self.max_upload = settings.storage_max_upload_mb * 1024 * 1024
        self.tmp_dir = state_path(settings, "tmp", "storage-uploads")

    # Fetched without the project's key (supabase-js sends none): public objects and signed
    # URLs; the signed ones carry their own token, checked here.
    open_paths = OpenPaths(lambda rest: rest.startswith(("/object/public/", "/object/sign/", "/object/upload/sign/")))

    async def stop_tenant(self, ref: str) -> None:
        self.directory.forget_pool(ref, "storage")

    async def close(self) -> None:
        await self.directory.release()

    # -- dispatch ------------------------------------------------------------------------------
    async def open(self, call: Any) -> web.StreamResponse | Upstreamed:
        request: web.Request = call.request
        raw_path = call.rest.split("?", 1)[0]
        parts = [unquote(p) for p in raw_path.split("/")[1:]]
        self.directory.prime(call.ref, getattr(call, "tenant", None))
        try:
            return await self._route(call.ref, request, parts)
        except StorageApiError as exc:
            return exc.response()
        except Gone:
            return StorageApiError(404, "not_found", "project not found").response()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("storage database of %s unreachable: %s", call.ref, type(exc).__name__)
            self.directory.forget_pool(call.ref, "storage")
            return StorageApiError(503, "DatabaseError", "the project's database is unavailable").response()
        except StorageError as exc:
            log.warning("object store for %s: %s", call.ref, exc)
            return StorageApiError(500, "InternalError", "the object store failed").response()

    async def _route(self, ref: str, request: web.Request, parts: list[str]) -> web.StreamResponse | Upstreamed:
        m = request.method
        head, rest = (parts[0] if parts else ""), parts[1:]
        if head == "bucket":
            return await self._buckets(ref, request, rest)
        if head != "object" or not rest:
            raise StorageApiError(404, "not_found", "Route not found")
        kind = rest[0]
        if kind == "public" and m in ("GET", "HEAD") and len(rest) >= 3:
            return await self.download(ref, request, rest[1], "/".join(rest[2:]), caller=None, public=True)
        if kind == "sign" and m in ("GET", "HEAD") and len(rest) >= 3:
            return await self.signed_download(ref, request, rest[1], "/".join(rest[2:]))
        if kind == "upload" and len(rest) >= 4 and rest[1] == "sign":
            if m == "POST" and "token" not in request.query:
                return await self.sign_upload(ref, request, rest[2], "/".join(rest[3:]))
            if m in ("PUT", "POST"):
                return await self.signed_upload(ref, request, rest[2], "/".join(rest[3:]))
        if kind == "render":
            raise StorageApiError(501, "not_implemented", "image transformations (/render) are not built on this platform")
        caller = await self._caller(ref, request)
        if kind == "list" and m == "POST" and len(rest) == 2:
            return await self.list_objects(ref, request, caller, rest[1])
        if kind == "move" and m == "POST" and len(rest) == 1:
            return await self.move(ref, request, caller)
        if kind == "copy" and m == "POST" and len(rest) == 1:
            return await self.copy(ref, request, caller)
        if kind == "sign" and m == "POST" and len(rest) == 2:
            return await self.sign_many(ref, request, caller, rest[1])
        if kind == "sign" and m == "POST" and len(rest) >= 3:
            return await self.sign_one(ref, request, caller, rest[1], "/".join(rest[2:]))
        if kind == "info" and m == "GET" and len(rest) >= 3:
            return await self.info(ref, caller, rest[1], "/".join(rest[2:]))
        if kind == "authenticated" and m in ("GET", "HEAD") and len(rest) >= 3:
            return await self.download(ref, request, rest[1], "/".join(rest[2:]), caller=caller)
        bucket, name = rest[0], "/".join(rest[1:])
        if m == "DELETE" and not name:
            return await self.remove_many(ref, request, caller, bucket)
        if not name:
            raise StorageApiError(404, "not_found", "Route not found")
        if m in ("GET", "HEAD"):
            return await self.download(ref, request, bucket, name, caller=caller)
        if m in ("POST", "PUT"):
            upsert = m == "PUT" or request.headers.get("x-upsert", "").lower() == "true"
            return await self.upload(ref, request, bucket, name, caller=caller, upsert=upsert)
        if m == "DELETE":
            await self._delete_names(ref, caller, bucket, [name], require=True)
            return json_response(200, {"message": "Successfully deleted"})
        raise StorageApiError(405, "method_not_allowed", f"{m} not allowed here")

    # -- plumbing ------------------------------------------------------------------------------
    async def _caller(self, ref: str, request: web.Request) -> Caller:
        token = bearer(request)
        if not token:
            raise StorageApiError(400, "Error", "headers must have required property 'authorization'")
        secret = (await self.directory.credentials(ref))["jwt_secret"]
        try:
            claims = decode(token, secret)
        except jwt.ExpiredSignatureError:
            raise StorageApiError(400, "InvalidJWT", "\"exp\" claim timestamp check failed") from None
        except jwt.InvalidTokenError:
            raise StorageApiError(400, "InvalidJWT", "invalid signature") from None
        return Caller(role=str(claims["role"]), claims=claims, token=token)

    @contextlib.asynccontextmanager
    async def _tx(self, ref: str, caller: Caller | None) -> AsyncIterator[Any]:
        """One transaction on the storage login; with a caller, as the caller's role and claims."""
        pool = await self.directory.pool(ref, "storage")
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            async with conn.transaction():
                if caller is not None:
                    await self._become(conn, caller)
                yield conn

    @staticmethod
    async def _become(conn: Any, caller: Caller) -> None:
        await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(caller.role)))
        await conn.execute("SELECT set_config('request.jwt.claims', %s, true), set_config('request.jwt.claim.sub', %s, true), "
                           "set_config('request.jwt.claim.role', %s, true)",
                           (json.dumps(caller.claims), str(caller.claims.get("sub") or ""), caller.role))

    async def _json(self, request: web.Request) -> dict[str, Any]:
        raw = await request.content.read(MAX_JSON + 1)
        if len(raw) > MAX_JSON:
            raise StorageApiError(413, "Payload too large", "request body too large")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise StorageApiError(400, "invalid_json", "Body is not valid JSON") from None
        if not isinstance(body, dict):
            raise StorageApiError(400, "invalid_json", "Body must be a JSON object")
        return body

    async def _bucket_row(self, ref: str, bucket: str) -> dict[str, Any]:
        async with self._tx(ref, None) as conn:
            row = await (await conn.execute("SELECT * FROM storage.buckets WHERE id = %s", (bucket,))).fetchone()
        if row is None:
            raise not_found("Bucket")
        return dict(row)

    def _secret(self, creds: dict[str, str]) -> str:
        return creds["jwt_secret"]

    # -- buckets -------------------------------------------------------------------------------
    @staticmethod
    def _bucket_view(row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "name": row["name"], "owner": str(row["owner"]) if row.get("owner") else "",
                "public": bool(row["public"]), "file_size_limit": row["file_size_limit"],
                "allowed_mime_types": row["allowed_mime_types"], "created_at": _iso(row["created_at"]),
                "updated_at": _iso(row["updated_at"])}

    def _bucket_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "public" in body:
            if not isinstance(body["public"], bool):
                raise StorageApiError(400, "invalid_request", "public must be a boolean")
            out["public"] = body["public"]
        if "file_size_limit" in body:
            out["file_size_limit"] = parse_size(body["file_size_limit"])
        if "allowed_mime_types" in body:
            types = body["allowed_mime_types"]
            if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) and t for t in types)):
                raise StorageApiError(400, "invalid_request", "allowed_mime_types must be a list of MIME types")
            out["allowed_mime_types"] = types or None
        return out

    async def _buckets(self, ref: str, request: web.Request, rest: list[str]) -> web.Response:
        caller = await self._caller(ref, request)
        m = request.method
        try:
            if not rest and m == "GET":
                async with self._tx(ref, caller) as conn:
                    rows = await (await conn.execute("SELECT * FROM storage.buckets ORDER BY name")).fetchall()
                return json_response(200, [self._bucket_view(r) for r in rows])
            if not rest and m == "POST":
                body = await self._json(request)
                name = body.get("name") or body.get("id")
                bucket_id = body.get("id") or name
                if not isinstance(name, str) or not BUCKET_ID.match(name) or not isinstance(bucket_id, str) \
                        or not BUCKET_ID.match(bucket_id):
                    raise StorageApiError(400, "Invalid Input", "Bucket name invalid")
                f = self._bucket_fields(body)
                async with self._tx(ref, caller) as conn:
                    await conn.execute(
                        "INSERT INTO storage.buckets (id, name, owner, owner_id, public, file_size_limit, allowed_mime_types) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (bucket_id, name, caller.user_id, caller.user_id, f.get("public", False),
                         f.get("file_size_limit"), f.get("allowed_mime_types")))
                return json_response(200, {"name": bucket_id})
            if len(rest) == 1 and m == "GET":
                async with self._tx(ref, caller) as conn:
                    row = await (await conn.execute("SELECT * FROM storage.buckets WHERE id = %s", (rest[0],))).fetchone()
                if row is None:
                    raise not_found("Bucket")
                return json_response(200, self._bucket_view(row))
            if len(rest) == 1 and m == "PUT":
                f = self._bucket_fields(await self._json(request))
                if not f:
                    return json_response(200, {"message": "Successfully updated"})
                sets = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder()) for k in f)
                async with self._tx(ref, caller) as conn:
                    cur = await conn.execute(sql.SQL("UPDATE storage.buckets SET {}, updated_at = now() WHERE id = %s").format(sets),
                                             (*f.values(), rest[0]))
                    if cur.rowcount == 0:
                        raise not_found("Bucket")
                return json_response(200, {"message": "Successfully updated"})
            if len(rest) == 2 and rest[1] == "empty" and m == "POST":
                async with self._tx(ref, caller) as conn:
                    rows = await (await conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s RETURNING version",
                                                     (rest[0],))).fetchall()
                await self._drop_blobs(ref, [r["version"] for r in rows])
                return json_response(200, {"message": "Successfully emptied"})
            if len(rest) == 1 and m == "DELETE":
                async with self._tx(ref, caller) as conn:
                    left = await (await conn.execute("SELECT 1 FROM storage.objects WHERE bucket_id = %s LIMIT 1",
                                                     (rest[0],))).fetchone()
                    if left is None:
                        # The storage login's own view: are there objects the caller cannot see?
                        await conn.execute("RESET ROLE")
                        left = await (await conn.execute("SELECT 1 FROM storage.objects WHERE bucket_id = %s LIMIT 1",
                                                         (rest[0],))).fetchone()
                        await self._become(conn, caller)
                    if left is not None:
                        raise StorageApiError(409, "InvalidRequest", "The bucket you tried to delete is not empty")
                    cur = await conn.execute("DELETE FROM storage.buckets WHERE id = %s", (rest[0],))
                    if cur.rowcount == 0:
                        raise not_found("Bucket")
                return json_response(200, {"message": "Successfully deleted"})
        except psycopg.Error as exc:
            mapped = _rls_error(exc)
            if mapped is None:
                raise
            raise mapped from None
        raise StorageApiError(404, "not_found", "Route not found")

    # -- uploads -------------------------------------------------------------------------------
    async def _receive(self, request: web.Request, limit: int) -> tuple[Path, int, str, str, str, dict[str, Any] | None]:
        """The upload's bytes in a temporary file: (path, size, md5, mimetype, cache-control,
        user metadata). Raw bodies and multipart forms (storage-js sends either)."""
        too_large = StorageApiError(413, "Payload too large", "The object exceeded the maximum allowed size")
        if request.content_length is not None and request.content_length > limit and \
                not request.content_type.startswith("multipart/"):
            raise too_large
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, suffix=".upload")
        path = Path(name)
        md5 = hashlib.md5()  # noqa: S324 -- an ETag, as S3 and Supabase compute it
        size = 0
        mime = request.headers.get("Content-Type", "application/octet-stream") or "application/octet-stream"
        cache = request.headers.get("Cache-Control") or ""
        meta: dict[str, Any] | None = None
        try:
            with os.fdopen(fd, "wb") as out:
                async def write_from(read: Any) -> None:
                    nonlocal size
                    while True:
                        chunk = await read()
                        if not chunk:
                            return
                        size += len(chunk)
                        if size > limit:
                            raise too_large
                        md5.update(chunk)
                        out.write(chunk)

                if request.content_type.startswith("multipart/"):
                    reader = await request.multipart()
                    got_file = False
                    async for part in reader:
                        if not isinstance(part, BodyPartReader):
                            continue
                        if part.filename is not None or (part.name in ("", None) and not got_file):
                            if got_file:
                                continue
                            got_file = True
                            mime = part.headers.get("Content-Type", "application/octet-stream")
                            await write_from(lambda: part.read_chunk(CHUNK))
                        elif part.name == "cacheControl":
                            cache = (await part.text())[:200]
                        elif part.name == "metadata":
                            try:
                                meta = json.loads(await part.text())
                            except ValueError:
                                raise StorageApiError(400, "invalid_request", "metadata must be JSON") from None
                        elif part.name == "contentType":
                            mime = (await part.text())[:200]
                        else:
                            await part.release()
                    if not got_file:
                        raise StorageApiError(400, "invalid_request", "no file in the form")
                else:
                    await write_from(lambda: request.content.read(CHUNK))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if cache and cache.isdigit():
            cache = f"max-age={cache}"
        return path, size, md5.hexdigest(), mime, cache or "no-cache", meta

    async def upload(self, ref: str, request: web.Request, bucket: str, name: str, *, caller: Caller | None,
                     upsert: bool, owner: str | None = None) -> web.Response:
        check_name(name)
        row = await self._bucket_row(ref, bucket)
        limit = min(self.max_upload, row["file_size_limit"] or self.max_upload)
        declared = request.headers.get("Content-Type", "")
        if declared and not declared.startswith("multipart/") and not mime_allowed(declared, row["allowed_mime_types"]):
            raise StorageApiError(415, "invalid_mime_type", f"mime type {declared} is not supported")
        path, size, etag, mime, cache, meta = await self._receive(request, limit)
        version = uuid.uuid4().hex
        try:
            if not mime_allowed(mime, row["allowed_mime_types"]):
                raise StorageApiError(415, "invalid_mime_type", f"mime type {mime} is not supported")
            await asyncio.to_thread(self.store.put_file, bucket_of_store(ref), f"objects/{version}", path)
        finally:
            path.unlink(missing_ok=True)
        metadata = {"eTag": f'"{etag}"', "size": size, "mimetype": mime, "cacheControl": cache,
                    "lastModified": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                    "contentLength": size, "httpStatusCode": 200}
        owner_id = owner if owner is not None else (caller.user_id if caller else None)
        try:
            async with self._tx(ref, None) as conn:
                old = await (await conn.execute("SELECT version FROM storage.objects WHERE bucket_id = %s AND name = %s",
                                                (bucket, name))).fetchone()
                if caller is not None:
                    await self._become(conn, caller)
                values = (bucket, name, owner_id, owner_id, json.dumps(metadata), version,
                          json.dumps(meta) if meta is not None else None)
                insert = ("INSERT INTO storage.objects (bucket_id, name, owner, owner_id, metadata, version, user_metadata) "
                          "VALUES (%s, %s, %s, %s, %s, %s, %s)")
                if upsert:
                    insert += (" ON CONFLICT (bucket_id, name) DO UPDATE SET owner = excluded.owner, owner_id = excluded.owner_id, "
                               "metadata = excluded.metadata, version = excluded.version, user_metadata = excluded.user_metadata, "
                               "updated_at = now(), last_accessed_at = now()")
                new = await (await conn.execute(insert + " RETURNING id", values)).fetchone()
        except psycopg.Error as exc:
            await self._drop_blobs(ref, [version])
            mapped = _rls_error(exc)
            if mapped is None:
                raise
            raise mapped from None
        except BaseException:
            await self._drop_blobs(ref, [version])
            raise
        if old is not None and old["version"] != version:
            await self._drop_blobs(ref, [old["version"]])
        return json_response(200, {"Id": str(new["id"]), "Key": f"{bucket}/{name}"})

    async def _drop_blobs(self, ref: str, versions: list[Any]) -> None:
        for v in versions:
            if v:
                with contextlib.suppress(StorageError):
                    await asyncio.to_thread(self.store.delete, bucket_of_store(ref), f"objects/{v}")

    # -- downloads -----------------------------------------------------------------------------
    async def download(self, ref: str, request: web.Request, bucket: str, name: str, *, caller: Caller | None,
                       public: bool = False) -> web.StreamResponse | Upstreamed:
        if public:
            row = await self._bucket_row(ref, bucket)
            if not row["public"]:
                raise not_found("Object")
        async with self._tx(ref, caller) as conn:
            obj = await (await conn.execute("SELECT id, version, metadata, updated_at FROM storage.objects "
                                            "WHERE bucket_id = %s AND name = %s", (bucket, name))).fetchone()
        if obj is None:
            raise not_found("Object")
        return await self._stream(ref, request, obj, name)

    async def _stream(self, ref: str, request: web.Request, obj: dict[str, Any], name: str) -> Upstreamed:
        meta = obj["metadata"] or {}
        try:
            handle = await asyncio.to_thread(self.store.open_read, bucket_of_store(ref), f"objects/{obj['version']}")
        except StorageError:
            raise not_found("Object") from None
        headers: CIMultiDict[str] = CIMultiDict()
        headers["Content-Type"] = meta.get("mimetype") or "application/octet-stream"
        if meta.get("size") is not None:
            headers["Content-Length"] = str(meta["size"])
        headers["Cache-Control"] = meta.get("cacheControl") or "no-cache"
        if meta.get("eTag"):
            headers["ETag"] = meta["eTag"]
        if isinstance(obj.get("updated_at"), datetime):
            headers["Last-Modified"] = obj["updated_at"].strftime("%a, %d %b %Y %H:%M:%S GMT")
        if "download" in request.query:
            filename = request.query.get("download") or name.rsplit("/", 1)[-1]
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"

        async def body() -> AsyncIterator[bytes]:
            while True:
                chunk = await asyncio.to_thread(handle.read, CHUNK)
                if not chunk:
                    return
                yield chunk

        return Upstreamed(status=200, headers=headers, body=body(), release=handle.close)

    # -- signed URLs ---------------------------------------------------------------------------
    async def _sign(self, ref: str, payload: dict[str, Any], expires_in: Any) -> str:
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in < 1:
            raise StorageApiError(400, "invalid_request", "expiresIn must be a positive number of seconds")
        now = int(time.time())
        secret = (await self.directory.credentials(ref))["jwt_secret"]
        return jwt.encode({**payload, "iat": now, "exp": now + int(expires_in)}, secret, algorithm="HS256")

    async def _verify(self, ref: str, token: str, url: str) -> dict[str, Any]:
        secret = (await self.directory.credentials(ref))["jwt_secret"]
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise StorageApiError(400, "InvalidJWT", "\"exp\" claim timestamp check failed") from None
        except jwt.InvalidTokenError:
            raise StorageApiError(400, "InvalidJWT", "invalid signature") from None
        if claims.get("url") != url:
            raise StorageApiError(400, "InvalidSignature", "The url do not match the signature")
        return dict(claims)

    async def sign_one(self, ref: str, request: web.Request, caller: Caller, bucket: str, name: str) -> web.Response:
        body = await self._json(request)
        async with self._tx(ref, caller) as conn:
            found = await (await conn.execute("SELECT 1 FROM storage.objects WHERE bucket_id = %s AND name = %s",
                                              (bucket, name))).fetchone()
        if found is None:
            raise not_found("Object")
        token = await self._sign(ref, {"url": f"{bucket}/{name}"}, body.get("expiresIn"))
        return json_response(200, {"signedURL": f"/object/sign/{quote(bucket)}/{quote(name)}?token={token}"})

    async def sign_many(self, ref: str, request: web.Request, caller: Caller, bucket: str) -> web.Response:
        body = await self._json(request)
        paths = body.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths) or len(paths) > 1000:
            raise StorageApiError(400, "invalid_request", "paths must be a list of object names")
        async with self._tx(ref, caller) as conn:
            rows = await (await conn.execute("SELECT name FROM storage.objects WHERE bucket_id = %s AND name = ANY(%s)",
                                             (bucket, paths))).fetchall()
        visible = {r["name"] for r in rows}
        out = []
        for p in paths:
            if p in visible:
                token = await self._sign(ref, {"url": f"{bucket}/{p}"}, body.get("expiresIn"))
                out.append({"error": None, "path": p, "signedURL": f"/object/sign/{quote(bucket)}/{quote(p)}?token={token}"})
            else:
                out.append({"error": "Either the object does not exist or you do not have access to it",
                            "path": p, "signedURL": None})
        return json_response(200, out)

    async def signed_download(self, ref: str, request: web.Request, bucket: str, name: str) -> Upstreamed:
        await self._verify(ref, request.query.get("token", ""), f"{bucket}/{name}")
        async with self._tx(ref, None) as conn:
            obj = await (await conn.execute("SELECT id, version, metadata, updated_at FROM storage.objects "
                                            "WHERE bucket_id = %s AND name = %s", (bucket, name))).fetchone()
        if obj is None:
            raise not_found("Object")
        return await self._stream(ref, request, obj, name)

    async def sign_upload(self, ref: str, request: web.Request, bucket: str, name: str) -> web.Response:
        caller = await self._caller(ref, request)
        check_name(name)
        await self._bucket_row(ref, bucket)
        upsert = request.headers.get("x-upsert", "").lower() == "true"
        # The caller must be allowed to create the object now (its RLS insert policy), as
        # Supabase checks: try the insert and roll it back.
        try:
            async with self._tx(ref, caller) as conn:
                async with conn.transaction(force_rollback=True):
                    await conn.execute("INSERT INTO storage.objects (bucket_id, name, owner, owner_id, version) "
                                       "VALUES (%s, %s, %s, %s, 'probe') ON CONFLICT DO NOTHING",
                                       (bucket, name, caller.user_id, caller.user_id))
        except psycopg.Error as exc:
            mapped = _rls_error(exc)
            if mapped is None:
                raise
            raise mapped from None
        token = await self._sign(ref, {"url": f"{bucket}/{name}", "owner": caller.user_id, "upsert": upsert}, 7200)
        return json_response(200, {"url": f"/object/upload/sign/{quote(bucket)}/{quote(name)}?token={token}",
                                   "token": token})

    async def signed_upload(self, ref: str, request: web.Request, bucket: str, name: str) -> web.Response:
        claims = await self._verify(ref, request.query.get("token", ""), f"{bucket}/{name}")
        answer = await self.upload(ref, request, bucket, name, caller=None, upsert=bool(claims.get("upsert")),
                                   owner=claims.get("owner") or None)
        return answer

    # -- listing, info, move, copy, delete -----------------------------------------------------
    async def list_objects(self, ref: str, request: web.Request, caller: Caller, bucket: str) -> web.Response:
        body = await self._json(request)
        prefix = body.get("prefix") or ""
        if not isinstance(prefix, str):
            raise StorageApiError(400, "invalid_request", "prefix must be a string")
        prefix = prefix.strip("/")
        prefix = prefix + "/" if prefix else ""
        try:
            limit = min(max(int(body.get("limit") or 100), 1), 1000)
            offset = max(int(body.get("offset") or 0), 0)
        except (TypeError, ValueError):
            raise StorageApiError(400, "invalid_request", "limit and offset must be integers") from None
        sort = body.get("sortBy") or {}
        column = sort.get("column") if isinstance(sort, dict) else None
        column = column if column in SORT_COLUMNS else "name"
        order = "DESC" if isinstance(sort, dict) and str(sort.get("order", "")).lower() == "desc" else "ASC"
        search = body.get("search") or ""
        if not isinstance(search, str):
            raise StorageApiError(400, "invalid_request", "search must be a string")
        query = sql.SQL(
            "WITH f AS (SELECT split_part(substr(name, length(%(p)s) + 1), '/', 1) AS first, "
            "  strpos(substr(name, length(%(p)s) + 1), '/') > 0 AS folder, id, updated_at, created_at, "
            "  last_accessed_at, metadata FROM storage.objects "
            "  WHERE bucket_id = %(b)s AND starts_with(name, %(p)s) AND name <> %(p)s), "
            "e AS (SELECT first AS name, NULL::uuid AS id, NULL::timestamptz AS updated_at, NULL::timestamptz AS created_at, "
            "  NULL::timestamptz AS last_accessed_at, NULL::jsonb AS metadata FROM f WHERE folder GROUP BY first "
            "  UNION ALL SELECT first, id, updated_at, created_at, last_accessed_at, metadata FROM f WHERE NOT folder) "
            "SELECT * FROM e WHERE starts_with(lower(name), lower(%(s)s)) ORDER BY {col} {ord} NULLS FIRST, name "
            "LIMIT %(l)s OFFSET %(o)s").format(col=sql.Identifier(column), ord=sql.SQL(order))
        async with self._tx(ref, caller) as conn:
            rows = await (await conn.execute(query, {"p": prefix, "b": bucket, "s": search, "l": limit, "o": offset})).fetchall()
        return json_response(200, [{"name": r["name"], "id": str(r["id"]) if r["id"] else None,
                                    "updated_at": _iso(r["updated_at"]), "created_at": _iso(r["created_at"]),
                                    "last_accessed_at": _iso(r["last_accessed_at"]), "metadata": r["metadata"]}
                                   for r in rows])

    async def info(self, ref: str, caller: Caller, bucket: str, name: str) -> web.Response:
        async with self._tx(ref, caller) as conn:
            r = await (await conn.execute("SELECT * FROM storage.objects WHERE bucket_id = %s AND name = %s",
                                          (bucket, name))).fetchone()
        if r is None:
            raise not_found("Object")
        meta = r["metadata"] or {}
        return json_response(200, {"id": str(r["id"]), "name": r["name"], "version": r["version"],
                                   "bucket_id": r["bucket_id"], "size": meta.get("size"),
                                   "content_type": meta.get("mimetype"), "cache_control": meta.get("cacheControl"),
                                   "etag": meta.get("eTag"), "metadata": r["user_metadata"] or {},
                                   "last_modified": _iso(r["updated_at"]), "created_at": _iso(r["created_at"])})

    def _move_args(self, body: dict[str, Any]) -> tuple[str, str, str, str]:
        src_bucket, src, dst = body.get("bucketId"), body.get("sourceKey"), body.get("destinationKey")
        dst_bucket = body.get("destinationBucket") or src_bucket
        if not all(isinstance(v, str) and v for v in (src_bucket, src, dst, dst_bucket)):
            raise StorageApiError(400, "invalid_request", "bucketId, sourceKey and destinationKey are required")
        return str(src_bucket), check_name(str(src)), str(dst_bucket), check_name(str(dst))

    async def move(self, ref: str, request: web.Request, caller: Caller) -> web.Response:
        src_bucket, src, dst_bucket, dst = self._move_args(await self._json(request))
        try:
            async with self._tx(ref, caller) as conn:
                cur = await conn.execute("UPDATE storage.objects SET bucket_id = %s, name = %s, updated_at = now() "
                                         "WHERE bucket_id = %s AND name = %s", (dst_bucket, dst, src_bucket, src))
                if cur.rowcount == 0:
                    raise not_found("Object")
        except psycopg.Error as exc:
            mapped = _rls_error(exc)
            if mapped is None:
                raise
            raise mapped from None
        return json_response(200, {"message": "Successfully moved"})

    async def copy(self, ref: str, request: web.Request, caller: Caller) -> web.Response:
        src_bucket, src, dst_bucket, dst = self._move_args(await self._json(request))
        version = uuid.uuid4().hex
        copied = False
        try:
            async with self._tx(ref, caller) as conn:
                row = await (await conn.execute("SELECT version, metadata, user_metadata FROM storage.objects "
                                                "WHERE bucket_id = %s AND name = %s", (src_bucket, src))).fetchone()
                if row is None:
                    raise not_found("Object")
                await asyncio.to_thread(self.store.copy, bucket_of_store(ref), f"objects/{row['version']}",
                                        f"objects/{version}")
                copied = True
                new = await (await conn.execute(
                    "INSERT INTO storage.objects (bucket_id, name, owner, owner_id, metadata, version, user_metadata) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (dst_bucket, dst, caller.user_id, caller.user_id, json.dumps(row["metadata"]), version,
                     json.dumps(row["user_metadata"]) if row["user_metadata"] is not None else None))).fetchone()
        except psycopg.Error as exc:
            if copied:
                await self._drop_blobs(ref, [version])
            mapped = _rls_error(exc)
            if mapped is None:
                raise
            raise mapped from None
        return json_response(200, {"Id": str(new["id"]), "Key": f"{dst_bucket}/{dst}"})

    async def _delete_names(self, ref: str, caller: Caller, bucket: str, names: list[str],
                            require: bool = False) -> list[dict[str, Any]]:
        async with self._tx(ref, caller) as conn:
            rows = await (await conn.execute("DELETE FROM storage.objects WHERE bucket_id = %s AND name = ANY(%s) "
                                             "RETURNING *", (bucket, names))).fetchall()
        if require and not rows:
            raise not_found("Object")
        await self._drop_blobs(ref, [r["version"] for r in rows])
        return [dict(r) for r in rows]

    async def remove_many(self, ref: str, request: web.Request, caller: Caller, bucket: str) -> web.Response:
        body = await self._json(request)
        prefixes = body.get("prefixes")
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes) or len(prefixes) > 1000:
            raise StorageApiError(400, "invalid_request", "prefixes must be a list of object names")
        rows = await self._delete_names(ref, caller, bucket, prefixes)
        return json_response(200, [{"name": r["name"], "bucket_id": r["bucket_id"], "id": str(r["id"]),
                                    "owner": str(r["owner"]) if r["owner"] else None, "metadata": r["metadata"],
                                    "created_at": _iso(r["created_at"]), "updated_at": _iso(r["updated_at"]),
                                    "last_accessed_at": _iso(r["last_accessed_at"]), "version": r["version"]}
                                   for r in rows])
