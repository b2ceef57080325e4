"""Adapter: the Kubernetes API through the official `kubernetes` client, as a handful of
create-or-get operations on plain dict manifests. The only module of the kubernetes driver
that imports the client (tests/unit/test_layering.py).

Every call goes through the client's typed API classes with `_preload_content=False`, so
responses stay plain JSON dicts (no model round trip that could drop unknown fields).
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes.client as k8s
from kubernetes.client.rest import ApiException

# kind -> (API class, method suffix, namespaced, CRD (group, version, plural) or None)
KINDS: dict[str, tuple[str, str, bool, tuple[str, str, str] | None]] = {
    "Namespace": ("CoreV1Api", "namespace", False, None),
    "ResourceQuota": ("CoreV1Api", "resource_quota", True, None),
    "LimitRange": ("CoreV1Api", "limit_range", True, None),
    "Secret": ("CoreV1Api", "secret", True, None),
    "Service": ("CoreV1Api", "service", True, None),
    "Deployment": ("AppsV1Api", "deployment", True, None),
    "Job": ("BatchV1Api", "job", True, None),
    "NetworkPolicy": ("NetworkingV1Api", "network_policy", True, None),
    "Database": ("CustomObjectsApi", "custom_object", True, ("postgresql.cnpg.io", "v1", "databases")),
    "Cluster": ("CustomObjectsApi", "custom_object", True, ("postgresql.cnpg.io", "v1", "clusters")),
}


class KubeError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(f"Kubernetes API answered {status}: {reason}")
        self.status = status


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


class KubeApi:
    def __init__(self, api_url: str = "", *, token: str = "", verify_ssl: bool = True, timeout: float = 10.0):
        import kubernetes.config

        if api_url:
            cfg = k8s.Configuration()
            cfg.host = api_url.rstrip("/")
            cfg.verify_ssl = verify_ssl
            if token:
                cfg.api_key = {"authorization": token}
                cfg.api_key_prefix = {"authorization": "Bearer"}
        else:  # in the cluster: the pod's service account (the chart's provisioner ServiceAccount)
            cfg = k8s.Configuration()
            kubernetes.config.load_incluster_config(client_configuration=cfg)
        self.client = k8s.ApiClient(cfg)
        self.timeout = timeout

    def close(self) -> None:
        self.client.close()

    def _call(self, verb: str, kind: str, namespace: str | None, name: str | None = None,
              body: Any = None) -> dict[str, Any]:
        cls, suffix, namespaced, crd = KINDS[kind]
        api = getattr(k8s, cls)(self.client)
        kw: dict[str, Any] = {"_preload_content": False, "_request_timeout": self.timeout}
        if crd:
            args: list[Any] = [crd[0], crd[1], namespace, crd[2]]
            method = f"{'get' if verb == 'read' else verb}_namespaced_{suffix}"
            args += [name] if name is not None else []
        elif namespaced:
            method = f"{verb}_namespaced_{suffix}"
            args = [name, namespace] if name is not None else [namespace]
        else:
            method = f"{verb}_{suffix}"
            args = [name] if name is not None else []
        if body is not None:
            if verb == "delete":
                kw["body"] = body
            else:
                args.append(body)
        try:
            resp = getattr(api, method)(*args, **kw)
        except ApiException as exc:
            raise KubeError(exc.status, _reason(exc)) from None
        data = resp.data
        return json.loads(data) if data else {}

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self._call("read", kind, namespace, name)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create-or-get: create; on 409 (it exists) read it and merge-patch it to the wanted
        spec. Returns (object, created)."""
        kind, meta = obj["kind"], obj["metadata"]
        ns = meta.get("namespace")
        try:
            return self._call("create", kind, ns, body=obj), True
        except KubeError as exc:
            if exc.status != 409:
                raise
        patch = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
        if kind == "Job":  # a Job's pod template is immutable: read, do not patch
            return self.get(kind, ns, meta["name"]) or {}, False
        return self.patch(kind, ns, meta["name"], patch), False

    def patch(self, kind: str, namespace: str | None, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._call("patch", kind, namespace, name, patch)

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete; a 404 (already gone) is success. Returns whether it was there."""
        try:
            self._call("delete", kind, namespace, name,
                       body={"propagationPolicy": "Background"} if KINDS[kind][3] is None else None)
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise


def dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")[:63]
