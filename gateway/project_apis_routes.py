"""Platform routes behind the dashboard's Auth and Storage pages: a project's users (list,
create, delete) and its buckets and objects (list, create, upload, download), for the
project's owners and admins.

The gateway checks the caller's membership and role (projects `api_keys`: the service_role
key is handed to owners and admins only), then calls the project's own Auth admin API and
Storage API on the project edge with that key, as Supabase's Studio does. No business rules
here. Imports werkzeug, marshmallow, requests and the gateway's routing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests
from marshmallow import RAISE, Schema, fields, validate
from werkzeug.wrappers import Request, Response

from .app import json_response
from .errors import HttpError
from .limits import json_body
from .limits import load_object as _load
from .routing import route

Ctx = dict[str, Any]
MAX_JSON = 64 * 1024
MAX_UPLOAD = 50 * 1024 * 1024


class ProjectUserBody(Schema):
    class Meta:
        unknown = RAISE

    email = fields.Email(required=True)
    password = fields.String(validate=validate.Length(min=1, max=72))
    email_confirm = fields.Boolean(load_default=True)


class ProjectBucketBody(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.\- ]{1,100}$"))
    public = fields.Boolean(load_default=False)


class ProjectUser(Schema):
    id = fields.String(required=True)
    email = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    last_sign_in_at = fields.String(allow_none=True)
    email_confirmed_at = fields.String(allow_none=True)


def _service_key(gw: Any, request: Request, ctx: Ctx, ref: str) -> str:
    me = gw.caller(request, ctx)
    keys = {k["name"]: k["api_key"] for k in gw.services.projects.api_keys(me.id, ref)}
    key = keys.get("service_role")
    if key is None:
        raise HttpError(403, "only the project's owners and admins can manage its users and storage")
    return str(key)


def _edge(gw: Any, ref: str, path: str) -> str:
    s = gw.settings
    return f"http://{s.edge_host}:{s.edge_port}/{ref}{path}"


def _call(gw: Any, key: str, method: str, url: str, **kw: Any) -> requests.Response:
    headers = {"apikey": key, "Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    try:
        return requests.request(method, url, headers=headers, timeout=30, **kw)
    except requests.RequestException:
        raise HttpError(502, "the project's API is unavailable; try again shortly") from None


def _relay(r: requests.Response) -> Response:
    """The API's answer as ours: its JSON, or its error message with its status."""
    try:
        data = r.json()
    except ValueError:
        data = None
    if r.status_code >= 400:
        message = (data.get("msg") or data.get("message")) if isinstance(data, dict) else None
        raise HttpError(r.status_code if r.status_code < 500 else 502, str(message or r.text[:300] or "the project's API refused"))
    return json_response(data)


def _json(request: Request) -> Any:
    return json_body(request, MAX_JSON)


# ---- Auth: the project's users -------------------------------------------------------------------

@route("GET", "/platform/projects/<ref>/auth/users", summary="The project's Auth users (owners, admins)",
       tag="project-apis", query={"page": "page number (from 1)", "per_page": "users per page (1-1000)"})
def project_auth_users(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    key = _service_key(gw, request, ctx, ref)
    params = {k: request.args[k] for k in ("page", "per_page") if request.args.get(k, "").isdigit()}
    r = _call(gw, key, "GET", _edge(gw, ref, "/auth/v1/admin/users"), params=params)
    out = _relay(r)
    data = json.loads(out.get_data())
    users = [{k: u.get(k) for k in ("id", "email", "created_at", "last_sign_in_at", "email_confirmed_at")}
             for u in data.get("users", [])]
    return json_response({"users": users, "total": int(r.headers.get("X-Total-Count") or len(users))})


@route("POST", "/platform/projects/<ref>/auth/users", summary="Create a user of the project (owners, admins)",
       tag="project-apis", body=ProjectUserBody, response=ProjectUser, status=201)
def project_auth_create_user(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    key = _service_key(gw, request, ctx, ref)
    body = _load(ProjectUserBody(), _json(request))
    r = _call(gw, key, "POST", _edge(gw, ref, "/auth/v1/admin/users"), json=body)
    user = json.loads(_relay(r).get_data())
    return json_response({k: user.get(k) for k in ("id", "email", "created_at", "last_sign_in_at",
                                                   "email_confirmed_at")}, status=201)


@route("DELETE", "/platform/projects/<ref>/auth/users/<user_id>", summary="Delete a user of the project (owners, admins)",
       tag="project-apis", status=204)
def project_auth_delete_user(gw: Any, request: Request, ctx: Ctx, ref: str, user_id: str) -> Response:
    key = _service_key(gw, request, ctx, ref)
    _relay(_call(gw, key, "DELETE", _edge(gw, ref, f"/auth/v1/admin/users/{quote(user_id, safe='')}")))
    return json_response(None, status=204)


# ---- Storage: buckets and objects ----------------------------------------------------------------

@route("GET", "/platform/projects/<ref>/storage/buckets", summary="The project's storage buckets (owners, admins)",
       tag="project-apis")
def project_storage_buckets(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    key = _service_key(gw, request, ctx, ref)
    return _relay(_call(gw, key, "GET", _edge(gw, ref, "/storage/v1/bucket")))


@route("POST", "/platform/projects/<ref>/storage/buckets", summary="Create a storage bucket (owners, admins)",
       tag="project-apis", body=ProjectBucketBody, status=201)
def project_storage_create_bucket(gw: Any, request: Request, ctx: Ctx, ref: str) -> Response:
    key = _service_key(gw, request, ctx, ref)
    body = _load(ProjectBucketBody(), _json(request))
    out = _relay(_call(gw, key, "POST", _edge(gw, ref, "/storage/v1/bucket"),
                       json={"id": body["name"], "name": body["name"], "public": body["public"]}))
    out.status_code = 201
    return out


def _object_url(gw: Any, ref: str, bucket: str, name: str) -> str:
    if not name or name.startswith("/"):
        raise HttpError(400, "name: the object's path in the bucket")
    return _edge(gw, ref, f"/storage/v1/object/{quote(bucket, safe='')}/{quote(name, safe='/')}")


@route("GET", "/platform/projects/<ref>/storage/buckets/<bucket>/objects",
       summary="Objects and folders of a bucket under a prefix (owners, admins)", tag="project-apis",
       query={"prefix": "folder to list (empty: the bucket's top)"})
def project_storage_objects(gw: Any, request: Request, ctx: Ctx, ref: str, bucket: str) -> Response:
    key = _service_key(gw, request, ctx, ref)
    return _relay(_call(gw, key, "POST", _edge(gw, ref, f"/storage/v1/object/list/{quote(bucket, safe='')}"),
                        json={"prefix": request.args.get("prefix", ""), "limit": 1000, "offset": 0,
                              "sortBy": {"column": "name", "order": "asc"}}))


@route("PUT", "/platform/projects/<ref>/storage/buckets/<bucket>/object",
       summary="Upload an object (raw body; replaces one of the same name) (owners, admins)", tag="project-apis",
       query={"name": "the object's path in the bucket"})
def project_storage_upload(gw: Any, request: Request, ctx: Ctx, ref: str, bucket: str) -> Response:
    key = _service_key(gw, request, ctx, ref)
    url = _object_url(gw, ref, bucket, request.args.get("name", ""))
    if request.content_length is None or request.content_length > MAX_UPLOAD:
        raise HttpError(413, f"upload a file of at most {MAX_UPLOAD // (1024 * 1024)} MB, with its length")
    return _relay(_call(gw, key, "POST", url, data=_Sized(request.stream, request.content_length),
                        headers={"Content-Type": request.headers.get("Content-Type") or "application/octet-stream",
                                 "x-upsert": "true"}))


class _Sized:
    """The request body streamed on with its length (requests then sends Content-Length,
    not chunks)."""

    def __init__(self, stream: Any, length: int):
        self.stream, self.length = stream, length

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        return bytes(self.stream.read(n))


@route("GET", "/platform/projects/<ref>/storage/buckets/<bucket>/object",
       summary="Download an object (owners, admins)", tag="project-apis",
       query={"name": "the object's path in the bucket"})
def project_storage_download(gw: Any, request: Request, ctx: Ctx, ref: str, bucket: str) -> Response:
    key = _service_key(gw, request, ctx, ref)
    name = request.args.get("name", "")
    r = _call(gw, key, "GET", _object_url(gw, ref, bucket, name), stream=True)
    if r.status_code >= 400:
        _relay(r)
    filename = quote(name.rsplit("/", 1)[-1])
    return Response(r.iter_content(64 * 1024), status=200, headers={
        "Content-Type": r.headers.get("Content-Type", "application/octet-stream"),
        "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
        **({"Content-Length": r.headers["Content-Length"]} if "Content-Length" in r.headers else {})})
