"""Clients of the shared data-plane services' admin APIs, for the kubernetes driver: Supavisor
(pooler tenants), Supabase Realtime (tenants with the postgres_cdc_rls extension), Supabase
Storage (multi-tenant admin API) and Kong's Admin API (services, routes, consumers, key-auth).
Each call is idempotent: an upsert (PUT) or a read before a create; a delete of something
already gone is success."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import requests

NS_UUID = uuid.UUID("6f1f3a52-6c1b-4d57-9a55-1d6a0e7f4c10")  # stable ids of Kong entities


class DataPlaneError(Exception):
    pass


def kong_id(*parts: str) -> str:
    return str(uuid.uuid5(NS_UUID, "/".join(parts)))


class _Http:
    what = "service"

    def __init__(self, base: str, session: requests.Session | None = None, timeout: float = 10.0):
        self.base = base.rstrip("/")
        self.http = session or requests.Session()
        self.timeout = timeout

    def headers(self) -> dict[str, str]:
        return {}

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 204)) -> requests.Response:
        try:
            r = self.http.request(method, self.base + path, json=body, headers=self.headers(), timeout=self.timeout)
        except requests.RequestException as exc:
            raise DataPlaneError(f"{self.what}: could not reach {self.base} ({type(exc).__name__})") from None
        if r.status_code not in ok:
            raise DataPlaneError(f"{self.what}: {method} {path} answered {r.status_code}: {r.text[:200]}")
        return r


class _JwtAuth(_Http):
    """Supavisor and Realtime: a short-lived HS256 bearer token signed with their API_JWT_SECRET."""

    def __init__(self, base: str, secret: str, **kw: Any):
        super().__init__(base, **kw)
        self.secret = secret

    def headers(self) -> dict[str, str]:
        now = int(time.time())
        token = jwt.encode({"iat": now, "exp": now + 300, "role": "supaplatform"}, self.secret or "unset",
                           algorithm="HS256")
        return {"Authorization": f"Bearer {token}"}


class Supavisor(_JwtAuth):
    what = "Supavisor"

    def put_tenant(self, ref: str, *, db_host: str, db_port: int, db_name: str, db_user: str,
                   db_password: str, pool_size: int = 15, max_clients: int = 200) -> None:
        self.call("PUT", f"/api/tenants/{ref}", {"tenant": {
            "db_host": db_host, "db_port": db_port, "db_database": db_name, "ip_version": "auto",
            "require_user": False, "enforce_ssl": False, "default_pool_size": pool_size,
            "default_max_clients": max_clients,
            "users": [{"db_user": db_user, "db_password": db_password, "pool_size": pool_size,
                       "mode_type": "transaction", "is_manager": True}]}})

    def delete_tenant(self, ref: str) -> bool:
        return self.call("DELETE", f"/api/tenants/{ref}", ok=(200, 204, 404)).status_code != 404

    def has_tenant(self, ref: str) -> bool:
        return self.call("GET", f"/api/tenants/{ref}", ok=(200, 404)).status_code == 200


class Realtime(_JwtAuth):
    what = "Realtime"

    def ensure_tenant(self, ref: str, *, jwt_secret: str, db_host: str, db_port: int, db_name: str,
                      db_user: str, db_password: str, region: str = "local") -> bool:
        if self.call("GET", f"/api/tenants/{ref}", ok=(200, 404)).status_code == 200:
            return False
        self.call("POST", "/api/tenants", {"tenant": {
            "name": ref, "external_id": ref, "jwt_secret": jwt_secret, "max_concurrent_users": 200,
            "extensions": [{"type": "postgres_cdc_rls", "settings": {
                "db_name": db_name, "db_host": db_host, "db_user": db_user, "db_password": db_password,
                "db_port": str(db_port), "region": region, "poll_interval_ms": 100,
                "poll_max_record_bytes": 1048576, "ssl_enforced": False}}]}})
        return True

    def delete_tenant(self, ref: str) -> bool:
        return self.call("DELETE", f"/api/tenants/{ref}", ok=(200, 204, 404)).status_code != 404

    def has_tenant(self, ref: str) -> bool:
        return self.call("GET", f"/api/tenants/{ref}", ok=(200, 404)).status_code == 200


class Storage(_Http):
    what = "Storage"

    def __init__(self, base: str, admin_key: str, **kw: Any):
        super().__init__(base, **kw)
        self.admin_key = admin_key

    def headers(self) -> dict[str, str]:
        return {"apikey": self.admin_key}

    def put_tenant(self, ref: str, *, database_url: str, jwt_secret: str, anon_key: str, service_key: str,
                   file_size_limit: int = 50 * 1024 * 1024) -> None:
        self.call("PUT", f"/tenants/{ref}", {"anonKey": anon_key, "databaseUrl": database_url,
                                             "fileSizeLimit": file_size_limit, "jwtSecret": jwt_secret,
                                             "serviceKey": service_key,
                                             "features": {"imageTransformation": {"enabled": False}}})

    def delete_tenant(self, ref: str) -> bool:
        return self.call("DELETE", f"/tenants/{ref}", ok=(200, 204, 404)).status_code != 404

    def has_tenant(self, ref: str) -> bool:
        return self.call("GET", f"/tenants/{ref}", ok=(200, 404)).status_code == 200


class Kong(_Http):
    what = "Kong"

    def put_service(self, name: str, url: str, ref: str) -> None:
        self.call("PUT", f"/services/{name}", {"url": url, "tags": [f"ref:{ref}"]})

    def put_route(self, service: str, name: str, *, host: str, path: str, preserve_host: bool, ref: str) -> None:
        self.call("PUT", f"/services/{service}/routes/{name}", {
            "hosts": [host], "paths": [path], "strip_path": True, "preserve_host": preserve_host,
            "protocols": ["http", "https"], "tags": [f"ref:{ref}"]})

    def put_key_auth_plugin(self, service: str, ref: str) -> None:
        self.call("PUT", f"/services/{service}/plugins/{kong_id(service, 'key-auth')}", {
            "name": "key-auth", "config": {"key_names": ["apikey"], "hide_credentials": False},
            "tags": [f"ref:{ref}"]})

    def put_consumer(self, username: str, ref: str) -> None:
        self.call("PUT", f"/consumers/{username}", {"custom_id": username, "tags": [f"ref:{ref}"]})

    def put_key(self, username: str, key: str, ref: str) -> None:
        self.call("PUT", f"/consumers/{username}/key-auth/{kong_id(username, 'key')}", {"key": key, "tags": [f"ref:{ref}"]})

    def delete(self, path: str) -> None:
        self.call("DELETE", path, ok=(204, 404))
