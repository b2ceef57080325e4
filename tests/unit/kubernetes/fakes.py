"""Fakes at the ports to outside services, over real HTTP on loopback:

- FakeKube: a small stateful Kubernetes API (core/v1, apps/v1, batch/v1, networking.k8s.io/v1
  and CNPG's postgresql.cnpg.io/v1) that the real `kubernetes` client talks to. Creates answer
  409 AlreadyExists when the object exists and 404 when its namespace does not; reads and
  deletes 404 on what is missing; a namespace's deletion takes its objects with it. Every object
  written is validated (kubernetes-validate strict for 1.30; the vendored CNPG schema subset)
  and refused with 422 when invalid. Controllers are simulated: Deployments report their
  replicas ready, Jobs succeed, CNPG Databases are applied, Clusters get ready instances.
  Patches are JSON merge patches (the driver only sends mappings, where strategic merge and
  merge patch agree for the fields it patches).
- FakeDataPlane: Supavisor, Realtime, Storage and Kong admin APIs, checking auth and request
  bodies field by field against the schemas of those APIs as this project uses them.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import jsonschema
import jwt

from .chart import validate_strict

CNPG = json.loads((Path(__file__).parent / "cnpg_schema.json").read_text())
PLURALS = {"namespaces": "Namespace", "secrets": "Secret", "services": "Service", "resourcequotas": "ResourceQuota",
           "limitranges": "LimitRange", "deployments": "Deployment", "jobs": "Job",
           "networkpolicies": "NetworkPolicy", "databases": "Database", "clusters": "Cluster"}


_VALID: set[str] = set()  # objects already found valid (kubernetes-validate reads its schemas per call)


def validate_object(obj: dict[str, Any]) -> None:
    """kubernetes-validate strict for built-in kinds; the CNPG subset for CNPG's."""
    text = json.dumps(obj, sort_keys=True)
    if text in _VALID:
        return
    _validate(obj)
    _VALID.add(text)


def _validate(obj: dict[str, Any]) -> None:
    if obj.get("apiVersion", "").startswith("postgresql.cnpg.io/"):
        schema = dict(CNPG[obj["kind"]], definitions=CNPG["definitions"])
        jsonschema.validate(obj, schema)
    else:
        validate_strict(obj)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class _Server:
    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _go(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                status, payload = outer.handle(self.command, self.path.split("?")[0], body, dict(self.headers))
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _go

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.lock = threading.RLock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.faults: list[tuple[str, re.Pattern[str], int, list[int]]] = []
        self.requests: list[tuple[str, str]] = []

    def fail(self, method: str, path_regex: str, status: int, times: int = 1) -> None:
        self.faults.append((method, re.compile(path_regex), status, [times]))

    def handle(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path))
            for m, rx, status, left in self.faults:
                if m == method and rx.search(path) and left[0] > 0:
                    left[0] -= 1
                    return status, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                                    "message": "injected fault", "reason": "InternalError"}
            return self.route(method, path, body, headers)

    def route(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _status(code: int, reason: str, message: str) -> tuple[int, Any]:
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                  "reason": reason, "code": code}


PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                  r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>scale|status))?$")
NS_ITEM = re.compile(r"^/api/v1/namespaces/(?P<name>[^/]+)$")


class FakeKube(_Server):
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, namespace, name)
        self.creates: dict[tuple[str, str, str], int] = {}  # successful creates, ever
        self.invalid: list[str] = []
        super().__init__()

    # the cluster as the tests see it
    def snapshot(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        with self.lock:
            return json.loads(json.dumps({"|".join(k): v for k, v in self.objects.items()}))

    def keys(self) -> set[tuple[str, str, str]]:
        with self.lock:
            return set(self.objects)

    def _controllers(self, kind: str, obj: dict[str, Any]) -> None:
        spec = obj.get("spec", {})
        if kind == "Deployment":
            obj["status"] = {"replicas": spec.get("replicas", 1), "readyReplicas": spec.get("replicas", 1)}
        elif kind == "Job":
            obj.setdefault("status", {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
        elif kind == "Database":
            obj["status"] = {"applied": True}
        elif kind == "Cluster":
            hibernated = obj["metadata"].get("annotations", {}).get("cnpg.io/hibernation") == "on"
            obj["status"] = {"readyInstances": 0 if hibernated else spec.get("instances", 1)}
        elif kind == "Namespace":
            obj["status"] = {"phase": "Active"}

    def route(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        mt = NS_ITEM.match(path)
        if mt:
            kind, ns, name = "Namespace", "", mt["name"]
        else:
            mt = PATH.match(path)
            if not mt or mt["plural"] not in PLURALS:
                return _status(404, "NotFound", f"no route {path}")
            kind, ns, name = PLURALS[mt["plural"]], mt["ns"] or "", mt["name"]
            if kind == "Namespace" and ns:
                return _status(404, "NotFound", path)
        if kind != "Namespace" and ns and ("Namespace", "", ns) not in self.objects and method != "DELETE":
            return _status(404, "NotFound", f'namespaces "{ns}" not found')
        if method == "POST" and name is None:
            return self._create(kind, ns, body)
        if name is None:
            return 200, {"kind": f"{kind}List", "apiVersion": "v1", "items": [
                v for (k, n, _), v in sorted(self.objects.items()) if k == kind and n == ns]}
        key = (kind, ns, name)
        obj = self.objects.get(key)
        if obj is None:
            return _status(404, "NotFound", f'{kind.lower()}s "{name}" not found')
        if method == "GET":
            return 200, obj
        if method == "PATCH":
            patched = merge_patch(obj, body)
            patched.pop("status", None)
            err = self._check(patched)
            if err:
                return err
            self._controllers(kind, patched)
            patched["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
            self.objects[key] = patched
            return 200, patched
        if method == "DELETE":
            del self.objects[key]
            if kind == "Namespace":
                for k in [k for k in self.objects if k[1] == name]:
                    del self.objects[k]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
        return _status(405, "MethodNotAllowed", method)

    def _check(self, obj: dict[str, Any]) -> tuple[int, Any] | None:
        view = {k: v for k, v in obj.items() if k != "status"}
        view["metadata"] = {k: v for k, v in view["metadata"].items()
                            if k not in ("uid", "resourceVersion", "creationTimestamp")}
        try:
            validate_object(view)
        except Exception as exc:
            msg = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {getattr(exc, 'message', exc)}"
            self.invalid.append(msg)
            return _status(422, "Invalid", msg)
        return None

    def _create(self, kind: str, ns: str, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("kind") != kind:
            return _status(400, "BadRequest", f"kind {body.get('kind')} posted to {kind}s")
        meta = body.get("metadata") or {}
        if kind != "Namespace" and meta.get("namespace", ns) != ns:
            return _status(400, "BadRequest", "namespace of the body differs from the path")
        err = self._check(body)
        if err:
            return err
        key = (kind, ns, meta.get("name", ""))
        if key in self.objects:
            return _status(409, "AlreadyExists", f'{kind.lower()}s "{key[2]}" already exists')
        obj = json.loads(json.dumps(body))
        if ns:
            obj["metadata"]["namespace"] = ns
        obj["metadata"].update(uid=str(uuid.uuid4()), resourceVersion="1", creationTimestamp="2026-12-03T00:00:00Z")
        self._controllers(kind, obj)
        self.objects[key] = obj
        self.creates[key] = self.creates.get(key, 0) + 1
        return 201, obj


# ---- data plane -------------------------------------------------------------------------------

def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props, "required": required or list(props)}


S, I, B = {"type": "string", "minLength": 1}, {"type": "integer", "minimum": 1}, {"type": "boolean"}
SUPAVISOR_TENANT = {"type": "object", "additionalProperties": False, "required": ["tenant"], "properties": {"tenant": _obj({
    "db_host": S, "db_port": I, "db_database": S, "ip_version": {"enum": ["auto", "v4", "v6"]},
    "require_user": B, "enforce_ssl": B, "default_pool_size": I, "default_max_clients": I,
    "users": {"type": "array", "minItems": 1, "items": _obj({
        "db_user": S, "db_password": S, "pool_size": I, "mode_type": {"enum": ["transaction", "session"]},
        "is_manager": B})}}, ["db_host", "db_port", "db_database", "users"])}}
REALTIME_TENANT = {"type": "object", "additionalProperties": False, "required": ["tenant"], "properties": {"tenant": _obj({
    "name": S, "external_id": {"type": "string", "pattern": "^[a-z0-9]+$"}, "jwt_secret": S, "max_concurrent_users": I,
    "extensions": {"type": "array", "minItems": 1, "maxItems": 1, "items": _obj({
        "type": {"const": "postgres_cdc_rls"},
        "settings": _obj({"db_name": S, "db_host": S, "db_user": S, "db_password": S,
                          "db_port": {"type": "string", "pattern": "^[0-9]+$"}, "region": S,
                          "poll_interval_ms": I, "poll_max_record_bytes": I, "ssl_enforced": B})})}},
    ["name", "external_id", "jwt_secret", "extensions"])}}
REALTIME_TENANT_UPDATE = {"type": "object", "additionalProperties": False, "required": ["tenant"], "properties": {
    "tenant": {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
        "max_concurrent_users": I, "max_events_per_second": I, "max_bytes_per_second": I, "max_channels_per_client": I,
        "max_joins_per_second": I, "max_presence_events_per_second": I, "max_payload_size_in_kb": I,
        "private_only": B, "suspend": B}}}}
STORAGE_TENANT = _obj({"anonKey": S, "databaseUrl": {"type": "string", "pattern": "^postgres(ql)?://"},
                       "databasePoolUrl": S, "maxConnections": I, "fileSizeLimit": I, "jwtSecret": S,
                       "serviceKey": S, "features": _obj({"imageTransformation": _obj({"enabled": B})})},
                      ["anonKey", "databaseUrl", "fileSizeLimit", "jwtSecret", "serviceKey"])
TAGS = {"type": "array", "items": S}
KONG = {
    "services": _obj({"url": {"type": "string", "pattern": "^https?://"}, "tags": TAGS}, ["url"]),
    "routes": _obj({"hosts": {"type": "array", "minItems": 1, "items": S}, "paths": {"type": "array", "items": {"type": "string", "pattern": "^/"}},
                    "strip_path": B, "preserve_host": B, "protocols": {"type": "array", "items": {"enum": ["http", "https"]}},
                    "tags": TAGS}, ["hosts", "paths"]),
    "plugins": _obj({"name": {"const": "key-auth"}, "config": _obj({"key_names": {"type": "array", "items": S},
                                                                  "hide_credentials": B}, []), "tags": TAGS}, ["name"]),
    "consumers": _obj({"custom_id": S, "tags": TAGS}, []),
    "key-auth": _obj({"key": S, "tags": TAGS}, ["key"]),
}


class FakeDataPlane(_Server):
    """One server per service: kind is supavisor, realtime, storage or kong."""

    def __init__(self, kind: str, secret: str = "") -> None:
        self.kind = kind
        self.secret = secret
        self.tenants: dict[str, Any] = {}
        self.kong: dict[str, Any] = {}  # path -> entity
        self.writes: dict[str, int] = {}
        self.errors: list[str] = []
        super().__init__()

    def _bad(self, msg: str) -> tuple[int, Any]:
        self.errors.append(msg)
        return 400, {"error": msg}

    def _auth(self, headers: dict[str, str]) -> str | None:
        if self.kind in ("supavisor", "realtime"):
            token = (headers.get("Authorization") or "").removeprefix("Bearer ")
            try:
                jwt.decode(token, self.secret, algorithms=["HS256"])
            except jwt.InvalidTokenError as exc:
                return f"bad bearer token: {exc}"
        elif self.kind == "storage" and headers.get("apikey") != self.secret:
            return "bad admin apikey"
        return None

    def route(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        denied = self._auth(headers)
        if denied:
            self.errors.append(denied)
            return 401, {"error": denied}
        return getattr(self, f"_{self.kind}")(method, path, body)

    def _validate(self, schema: dict[str, Any], body: Any) -> str | None:
        try:
            jsonschema.validate(body, schema)
        except jsonschema.ValidationError as exc:
            return f"{'/'.join(map(str, exc.absolute_path))}: {exc.message}"
        return None

    def _count(self, what: str) -> None:
        self.writes[what] = self.writes.get(what, 0) + 1

    def _supavisor(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/tenants/([a-z0-9]+)", path)
        if not m:
            return 404, {"error": "not found"}
        ref = m[1]
        if method == "PUT":
            err = self._validate(SUPAVISOR_TENANT, body)
            if err:
                return self._bad(err)
            created = ref not in self.tenants
            self.tenants[ref] = body["tenant"] | {"external_id": ref}
            self._count(f"PUT {ref}")
            return (201 if created else 200), {"data": self.tenants[ref]}
        if method == "GET":
            return (200, {"data": self.tenants[ref]}) if ref in self.tenants else (404, {"error": "not found"})
        if method == "DELETE":
            return (204, None) if self.tenants.pop(ref, None) else (404, {"error": "not found"})
        return 405, None

    def _realtime(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/api/tenants" and method == "POST":
            err = self._validate(REALTIME_TENANT, body)
            if err:
                return self._bad(err)
            ext = body["tenant"]["external_id"]
            if ext in self.tenants:
                return 422, {"errors": {"external_id": ["has already been taken"]}}
            self.tenants[ext] = body["tenant"]
            self._count(f"POST {ext}")
            return 201, {"data": body["tenant"]}
        m = re.fullmatch(r"/api/tenants/([a-z0-9]+)", path)
        shutdown = re.fullmatch(r"/api/tenants/([a-z0-9]+)/shutdown", path)
        if shutdown and method == "POST":
            if shutdown[1] not in self.tenants:
                return 404, {"error": "not found"}
            self._count(f"shutdown {shutdown[1]}")
            return 204, None
        if not m:
            return 404, {"error": "not found"}
        if method == "GET":
            return (200, {"data": self.tenants[m[1]]}) if m[1] in self.tenants else (404, {"error": "not found"})
        if method == "PUT":  # Realtime's update: the given tenant fields change, the rest stay
            err = self._validate(REALTIME_TENANT_UPDATE, body)
            if err:
                return self._bad(err)
            if m[1] not in self.tenants:
                return 404, {"error": "not found"}
            self.tenants[m[1]] = {**self.tenants[m[1]], **body["tenant"]}
            self._count(f"PUT {m[1]}")
            return 200, {"data": self.tenants[m[1]]}
        if method == "DELETE":
            return (204, None) if self.tenants.pop(m[1], None) else (404, {"error": "not found"})
        return 405, None

    def _storage(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        m = re.fullmatch(r"/tenants/([a-z0-9]+)", path)
        if not m:
            return 404, {"error": "not found"}
        if method == "PUT":
            err = self._validate(STORAGE_TENANT, body)
            if err:
                return self._bad(err)
            self.tenants[m[1]] = body
            self._count(f"PUT {m[1]}")
            return 204, None
        if method == "GET":
            return (200, self.tenants[m[1]]) if m[1] in self.tenants else (404, {"error": "not found"})
        if method == "DELETE":
            return (204, None) if self.tenants.pop(m[1], None) else (404, {"error": "not found"})
        return 405, None

    def _kong(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if len(parts) not in (2, 4) or parts[0] not in ("services", "consumers"):
            return 404, {"message": "Not found"}
        collection = parts[-2]
        if collection not in KONG:
            return 404, {"message": "Not found"}
        if len(parts) == 4 and "/".join(parts[:2]) not in self.kong:
            return 404, {"message": f"{parts[0][:-1]} {parts[1]} not found"}
        if collection in ("plugins", "key-auth"):
            try:
                uuid.UUID(parts[-1])
            except ValueError:
                return self._bad(f"{collection} id must be a UUID: {parts[-1]}")
        if method == "PUT":
            err = self._validate(KONG[collection], body)
            if err:
                return self._bad(f"{collection}: {err}")
            self.kong[path.strip("/")] = body
            self._count(path.strip("/"))
            return 200, body
        if method == "DELETE":
            key = path.strip("/")
            self.kong.pop(key, None)
            # Kong cascades: a service's routes and plugins, a consumer's credentials.
            for k in [k for k in self.kong if k.startswith(key + "/")]:
                del self.kong[k]
            return 204, None
        if method == "GET":
            return (200, self.kong[path.strip("/")]) if path.strip("/") in self.kong else (404, {"message": "Not found"})
        return 405, None


class Cluster:
    """A fake cluster: the Kubernetes API and the four data-plane services."""

    def __init__(self) -> None:
        self.kube = FakeKube()
        self.supavisor = FakeDataPlane("supavisor", "supavisor-api-jwt-secret-for-the-fake-cluster")
        self.realtime = FakeDataPlane("realtime", "realtime-api-jwt-secret-for-the-fake-cluster")
        self.storage = FakeDataPlane("storage", "storage-admin-key")
        self.kong = FakeDataPlane("kong")

    def settings_overrides(self) -> dict[str, Any]:
        return {"provisioner_driver": "kubernetes", "k8s_api_url": self.kube.url,
                "k8s_supavisor_url": self.supavisor.url, "k8s_supavisor_api_secret": self.supavisor.secret,
                "k8s_realtime_url": self.realtime.url, "k8s_realtime_api_secret": self.realtime.secret,
                "k8s_storage_url": self.storage.url, "k8s_storage_admin_key": self.storage.secret,
                "k8s_kong_admin_url": self.kong.url, "k8s_tenant_domain": "projects.test"}

    def bootstrap_shared(self) -> None:
        """What infra/scripts/install-prerequisites.sh and the chart leave: platform-system and
        the shared CNPG Cluster."""
        for obj in ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "platform-system"}},):
            self.kube.handle("POST", "/api/v1/namespaces", obj, {})
        self.kube.handle("POST", "/apis/postgresql.cnpg.io/v1/namespaces/platform-system/clusters", {
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "tenants", "namespace": "platform-system"},
            "spec": {"instances": 3, "enableSuperuserAccess": True, "storage": {"size": "100Gi"}}}, {})

    def servers(self) -> list[_Server]:
        return [self.kube, self.supavisor, self.realtime, self.storage, self.kong]

    def registrations(self) -> dict[str, Any]:
        return {"supavisor": sorted(self.supavisor.tenants), "realtime": sorted(self.realtime.tenants),
                "storage": sorted(self.storage.tenants), "kong": sorted(self.kong.kong)}

    def close(self) -> None:
        for s in self.servers():
            s.close()
