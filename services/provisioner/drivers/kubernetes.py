"""The kubernetes driver (PLATFORM_PROVISIONER_DRIVER=kubernetes): each project is a
`tenant-<ref>` namespace with PostgREST, GoTrue and the edge runtime; its database lives in a
CloudNativePG Cluster (a `Database` in the shared Cluster, or a Cluster of its own with
k8s_database_mode=dedicated); it is registered with the shared Supavisor, Realtime, Storage
and Kong in `platform-system`; its objects are under the prefix <ref>/ of Storage's bucket.

Every step is create-or-get: Kubernetes objects are created and, on 409, read and patched to
the wanted spec; admin APIs are upserts or read-before-create; deletes of what is already gone
succeed. docs/kubernetes.md describes the layout and what was verified without a cluster.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from services.shared.settings import Settings

from ..storage import ObjectStore, StorageError
from . import kubernetes_manifests as m
from .base import Driver, StepContext, StepError
from .dataplane import DataPlaneError, Kong, Realtime, Storage, Supavisor
from .local import check_ref

# Kong services of a project: (name suffix, path, preserve_host)
ROUTES = (("rest", "/rest/v1/", False), ("auth", "/auth/v1/", False), ("realtime", "/realtime/v1/", True),
          ("storage", "/storage/v1/", False), ("functions", "/functions/v1/", False))
KEY_ROLES = ("anon", "service_role")
MARKER = ".supaplatform"
UP = {"healthy": True, "status": "ACTIVE_HEALTHY"}


def _down(error: str) -> dict[str, Any]:
    return {"healthy": False, "status": "UNHEALTHY", "error": error}


class KubernetesDriver(Driver):
    name = "kubernetes"
    PLANS = {
        "create": ("create_namespace", "create_secrets", "create_roles", "create_database", "create_schemas",
                   "deploy_services", "register_supavisor", "register_realtime", "register_storage",
                   "create_s3_prefix", "register_kong", "check_health"),
        "pause": ("scale_to_zero", "hibernate_database"),
        "restore": ("wake_database", "scale_up", "check_health"),
        "delete": ("unregister_kong", "unregister_storage", "unregister_realtime", "unregister_supavisor",
                   "delete_s3_prefix", "delete_database", "drop_roles", "delete_namespace"),
    }

    def __init__(self, settings: Settings, store: ObjectStore, *, kube: Any = None,
                 wait_timeout_s: float = 300.0, poll_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.store = store
        if kube is None:
            from .kubernetes_api import KubeApi

            kube = KubeApi(settings.k8s_api_url)
        self.kube = kube
        s = settings
        self.supavisor = Supavisor(s.k8s_supavisor_url, s.k8s_supavisor_api_secret)
        self.realtime = Realtime(s.k8s_realtime_url, s.k8s_realtime_api_secret)
        self.storage = Storage(s.k8s_storage_url, s.k8s_storage_admin_key)
        self.kong = Kong(s.k8s_kong_admin_url)
        self.wait_timeout_s = wait_timeout_s
        self.poll_s = poll_s
        self.sleep = sleep
        if s.k8s_database_mode not in ("shared", "dedicated"):
            raise ValueError(f"PLATFORM_K8S_DATABASE_MODE={s.k8s_database_mode!r}: shared or dedicated")

    # ----- layout ---------------------------------------------------------------------------
    def tenant(self, ref: str, org: str = "") -> m.Tenant:
        check_ref(ref)
        org = org if re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", org or "") else ""
        s = self.settings
        dedicated = s.k8s_database_mode == "dedicated"
        cluster = "db" if dedicated else s.k8s_cnpg_cluster
        ns = f"tenant-{ref}" if dedicated else s.k8s_shared_namespace
        return m.Tenant(ref=ref, shared_ns=s.k8s_shared_namespace, domain=s.k8s_tenant_domain,
                        db_host=f"{cluster}-rw.{ns}.svc", db_port=5432, dedicated=dedicated, cluster=cluster,
                        org=org)

    def images(self) -> dict[str, str]:
        s = self.settings
        return {"postgrest": s.k8s_postgrest_image, "gotrue": s.k8s_gotrue_image, "edge_runtime": s.k8s_edge_runtime_image}

    def connection_info(self, ref: str) -> dict[str, Any]:
        t = self.tenant(ref)
        return {"db_host": t.db_host, "db_port": t.db_port, "db_name": ref, "db_user": t.owner,
                "bucket": self.settings.k8s_storage_bucket}

    def _db_url(self, t: m.Tenant, password: str) -> str:
        from urllib.parse import quote

        return f"postgres://{quote(t.owner, safe='')}:{quote(password, safe='')}@{t.db_host}:{t.db_port}/{t.ref}"

    def describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, (DataPlaneError, StorageError)):
            return str(exc)
        return super().describe_error(exc)

    def _apply(self, obj: dict[str, Any]) -> bool:
        return self.kube.apply(obj)[1]

    def _wait(self, what: str, done: Callable[[], bool | str]) -> None:
        """Poll until done() is True; a string from done() is a failure reason."""
        deadline = time.monotonic() + self.wait_timeout_s
        while True:
            state = done()
            if state is True:
                return
            if isinstance(state, str):
                raise StepError(state)
            if time.monotonic() > deadline:
                raise StepError(f"{what}: not ready after {self.wait_timeout_s:.0f} s")
            self.sleep(self.poll_s)

    # ----- create ---------------------------------------------------------------------------
    def create_namespace(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        created = [o["kind"] for o in (m.namespace(t), m.resource_quota(t), m.limit_range(t), m.network_policy(t))
                   if self._apply(o)]
        return {"namespace": t.ns, "created": created}

    def create_secrets(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        c = ctx.credentials()
        self._apply(m.db_secret(t, c["db_pass"]))
        self._apply(m.secret(t, "tenant", t.ns, {
            "db-uri": self._db_url(t, c["db_pass"]), "jwt-secret": c["jwt_secret"],
            "anon-key": c.get("anon_key", ""), "service-role-key": c.get("service_role_key", "")}))  # type: ignore[misc]
        return {"secrets": [f"{t.db_ns}/db-{t.ref}", f"{t.ns}/tenant"]}

    def _run_job(self, t: m.Tenant, what: str) -> dict[str, Any]:
        job = m.sql_job(t, what)
        name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
        existing = self.kube.get("Job", ns, name)
        if existing and (existing.get("status") or {}).get("failed", 0) > job["spec"]["backoffLimit"]:
            self.kube.delete("Job", ns, name)  # a failed run: the retry starts a fresh one
            existing = None
        if existing is None:
            self._apply(job)

        def finished() -> bool | str:
            status = (self.kube.get("Job", ns, name) or {}).get("status") or {}
            for cond in status.get("conditions") or []:
                if cond.get("type") == "Failed" and cond.get("status") == "True":
                    return f"database job {what} failed: {cond.get('message') or cond.get('reason')}"
            return bool(status.get("succeeded"))

        self._wait(f"database job {what}", finished)
        return {"job": f"{ns}/{name}"}

    def create_roles(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        if t.dedicated:
            return {"skipped": "the dedicated cluster's initdb creates the owner"}
        return self._run_job(t, "roles")

    def create_database(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        if t.dedicated:
            obj = m.dedicated_cluster(t)
            self._apply(obj)

            def ready() -> bool | str:
                status = (self.kube.get("Cluster", t.ns, t.cluster) or {}).get("status") or {}
                return status.get("readyInstances", 0) >= 1
            self._wait(f"database cluster of {t.ref}", ready)
            return {"cluster": f"{t.ns}/{t.cluster}"}
        self._apply(m.database(t))

        def applied() -> bool | str:
            status = (self.kube.get("Database", t.shared_ns, f"db-{t.ref}") or {}).get("status") or {}
            if status.get("applied") is False and status.get("message"):
                return f"database {t.ref}: {status['message']}"
            return status.get("applied") is True
        self._wait(f"database {t.ref}", applied)
        return {"database": f"{t.shared_ns}/db-{t.ref}", "cluster": t.cluster}

    def create_schemas(self, ctx: StepContext) -> dict[str, Any]:
        return self._run_job(self.tenant(ctx.ref, ctx.org), "schemas")

    def deploy_services(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        for obj in m.workloads(t, self.images()):
            self._apply(obj)
        return {"deployments": list(m.TENANT_APPS)}

    def register_supavisor(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        self.supavisor.put_tenant(t.ref, db_host=t.db_host, db_port=t.db_port, db_name=t.ref, db_user=t.owner,
                                  db_password=ctx.credentials()["db_pass"])
        return {"supavisor": t.ref}

    def register_realtime(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        c = ctx.credentials()
        created = self.realtime.ensure_tenant(t.ref, jwt_secret=c["jwt_secret"], db_host=t.db_host, db_port=t.db_port,
                                              db_name=t.ref, db_user=t.owner, db_password=c["db_pass"])
        return {"realtime": t.ref, "created": created}

    def register_storage(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        c = ctx.credentials()
        self.storage.put_tenant(t.ref, database_url=self._db_url(t, c["db_pass"]), jwt_secret=c["jwt_secret"],
                                anon_key=c.get("anon_key", ""), service_key=c.get("service_role_key", ""))  # type: ignore[misc]
        return {"storage": t.ref}

    def create_s3_prefix(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        bucket = self.settings.k8s_storage_bucket
        self.store.ensure_bucket(bucket)
        self.store.put_bytes(bucket, f"{t.ref}/{MARKER}", t.ref.encode())
        return {"bucket": bucket, "prefix": f"{t.ref}/"}

    def register_kong(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        c = ctx.credentials()
        s = self.settings
        upstream = {"rest": f"http://postgrest.{t.ns}.svc:{m.POSTGREST_PORT}",
                    "auth": f"http://gotrue.{t.ns}.svc:{m.GOTRUE_PORT}",
                    "realtime": f"{s.k8s_realtime_url.rstrip('/')}/socket",
                    "storage": s.k8s_storage_url.rstrip("/"),
                    "functions": f"http://edge-runtime.{t.ns}.svc:{m.EDGE_RUNTIME_PORT}"}
        for suffix, path, preserve in ROUTES:
            svc = f"{t.ref}-{suffix}"
            self.kong.put_service(svc, upstream[suffix], t.ref)
            self.kong.put_route(svc, svc, host=t.host, path=path, preserve_host=preserve, ref=t.ref)
            self.kong.put_key_auth_plugin(svc, t.ref)
        keys = {"anon": c.get("anon_key", ""), "service_role": c.get("service_role_key", "")}  # type: ignore[misc]
        for role in KEY_ROLES:
            if not keys[role]:
                raise StepError(f"no {role} key for {t.ref}: the projects service did not hand it over", permanent=True)
            self.kong.put_consumer(f"{t.ref}-{role}", t.ref)
            self.kong.put_key(f"{t.ref}-{role}", keys[role], t.ref)
        return {"host": t.host, "routes": [p for _, p, _ in ROUTES]}

    def check_health(self, ctx: StepContext) -> dict[str, Any]:
        def healthy() -> bool:
            return all(v["healthy"] for v in self.check_tenant(ctx.ref).values())
        self._wait(f"project {ctx.ref}", healthy)
        return {"healthy": True}

    def check_tenant(self, ref: str) -> dict[str, dict[str, Any]]:
        """By the names of the v1 health route: rest, auth (the tenant's deployments), db (its
        CNPG Database or Cluster), pooler, realtime, storage (its registrations)."""
        t = self.tenant(ref)
        out: dict[str, dict[str, Any]] = {}
        for service, app in (("rest", "postgrest"), ("auth", "gotrue")):
            dep = self.kube.get("Deployment", t.ns, app)
            if dep is None:
                out[service] = _down(f"{app} is not deployed")
                continue
            want = (dep.get("spec") or {}).get("replicas", 1)
            ready = (dep.get("status") or {}).get("readyReplicas", 0) or 0
            if want == 0:
                out[service] = _down(f"{app} is scaled to zero (paused)")
            elif ready >= 1:
                out[service] = UP
            else:
                out[service] = {"healthy": False, "status": "COMING_UP", "error": f"{app}: 0 of {want} ready"}
        if t.dedicated:
            cl = (self.kube.get("Cluster", t.ns, t.cluster) or {}).get("status") or {}
            ok = cl.get("readyInstances", 0) >= 1
        else:
            db = (self.kube.get("Database", t.shared_ns, f"db-{t.ref}") or {}).get("status") or {}
            ok = db.get("applied") is True
        out["db"] = UP if ok else _down("the database is not ready")
        for name, client in (("pooler", self.supavisor), ("realtime", self.realtime), ("storage", self.storage)):
            try:
                out[name] = UP if client.has_tenant(t.ref) else _down(f"not registered with {client.what}")
            except DataPlaneError as exc:
                out[name] = _down(str(exc))
        return out

    # ----- pause / restore ------------------------------------------------------------------
    # ----- Studio, on demand (docs/studio.md) --------------------------------------------------
    def ensure_studio(self, ref: str, org: str = "") -> dict[str, Any]:
        """The project's Studio and pg-meta (create-or-get; a Studio scaled to zero comes back),
        and where the gateway's bridge reaches it. Needs the tenant Secret create_secrets made."""
        t = self.tenant(ref, org)
        if self.kube.get("Secret", t.ns, "tenant") is None:
            raise StepError(f"project {ref} has no tenant Secret: it is not provisioned on this cluster")
        images = {"studio": self.settings.k8s_studio_image, "pg_meta": self.settings.k8s_pg_meta_image}
        created = [f"{o['kind']}/{o['metadata']['name']}" for o in m.studio_workloads(t, images) if self._apply(o)]
        scaled = self._scale(t, 1, m.STUDIO_APPS)
        return {"url": f"http://studio.{t.ns}.svc:{m.STUDIO_PORT}", "created": created, "scaled": scaled}

    def stop_studio(self, ref: str) -> dict[str, Any]:
        """Idle: the Studio and its pg-meta scaled to zero (nothing runs until it is opened again)."""
        return {"scaled_to_zero": self._scale(self.tenant(ref), 0, m.STUDIO_APPS)}

    def _scale(self, t: m.Tenant, replicas: int, apps: tuple[str, ...] = m.TENANT_APPS) -> list[str]:
        done = []
        for app in apps:
            if self.kube.get("Deployment", t.ns, app) is not None:
                self.kube.patch("Deployment", t.ns, app, {"spec": {"replicas": replicas}})
                done.append(app)
        return done

    def scale_to_zero(self, ctx: StepContext) -> dict[str, Any]:
        # A paused project runs nothing: its Studio too (restore leaves Studio to its next opening).
        t = self.tenant(ctx.ref, ctx.org)
        return {"scaled_to_zero": self._scale(t, 0) + self._scale(t, 0, m.STUDIO_APPS)}

    def hibernate_database(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        if not t.dedicated:
            return {"skipped": "the shared cluster stays up; the data is kept"}
        self.kube.patch("Cluster", t.ns, t.cluster, {"metadata": {"annotations": {"cnpg.io/hibernation": "on"}}})
        return {"hibernated": f"{t.ns}/{t.cluster}"}

    def wake_database(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        if not t.dedicated:
            return {"skipped": "shared cluster"}
        self.kube.patch("Cluster", t.ns, t.cluster, {"metadata": {"annotations": {"cnpg.io/hibernation": "off"}}})
        return {"woken": f"{t.ns}/{t.cluster}"}

    def scale_up(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        scaled = self._scale(t, 1)
        missing = sorted(set(m.TENANT_APPS) - set(scaled))
        if missing:
            raise StepError(f"cannot restore {t.ref}: {', '.join(missing)} not deployed", permanent=True)
        return {"scaled_up": scaled}

    def compensate(self, operation: str, ctx: StepContext, completed: list[str]) -> str | None:
        if operation == "pause" and "scale_to_zero" in completed:
            self._scale(self.tenant(ctx.ref, ctx.org), 1)  # a failed pause must not leave the project down
            return "scaled the project's services back up"
        return None

    # ----- delete (reverse order of create) -------------------------------------------------
    def unregister_kong(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        for role in KEY_ROLES:
            self.kong.delete(f"/consumers/{t.ref}-{role}")
        for suffix, _, _ in ROUTES:
            svc = f"{t.ref}-{suffix}"
            self.kong.delete(f"/services/{svc}/routes/{svc}")
            self.kong.delete(f"/services/{svc}")
        return {"kong": "removed"}

    def unregister_storage(self, ctx: StepContext) -> dict[str, Any]:
        return {"removed": self.storage.delete_tenant(self.tenant(ctx.ref, ctx.org).ref)}

    def unregister_realtime(self, ctx: StepContext) -> dict[str, Any]:
        return {"removed": self.realtime.delete_tenant(self.tenant(ctx.ref, ctx.org).ref)}

    def unregister_supavisor(self, ctx: StepContext) -> dict[str, Any]:
        return {"removed": self.supavisor.delete_tenant(self.tenant(ctx.ref, ctx.org).ref)}

    def delete_s3_prefix(self, ctx: StepContext) -> dict[str, Any]:
        """Storage leaves a tenant's objects behind in its bucket: remove everything under <ref>/."""
        t = self.tenant(ctx.ref, ctx.org)
        bucket = self.settings.k8s_storage_bucket
        if not self.store.bucket_exists(bucket):
            return {"deleted_objects": 0}
        return {"deleted_objects": self.store.delete_prefix(bucket, f"{t.ref}/")}

    def delete_database(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        if t.dedicated:
            return {"removed": self.kube.delete("Cluster", t.ns, t.cluster)}
        removed = self.kube.delete("Database", t.shared_ns, f"db-{t.ref}")
        self._wait(f"dropping database {t.ref}", lambda: self.kube.get("Database", t.shared_ns, f"db-{t.ref}") is None)
        return {"removed": removed}

    def drop_roles(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        if t.dedicated:
            return {"skipped": "the roles went with the dedicated cluster"}
        if self.kube.get("Secret", t.db_ns, f"db-{t.ref}") is None:
            # removed last below: this step finished before (the job needs that Secret to run)
            return {"skipped": "roles already dropped"}
        out = self._run_job(t, "drop-roles")
        for what in ("roles", "schemas", "drop-roles"):
            self.kube.delete("Job", t.db_ns, f"sql-{what}-{t.ref}")
        self.kube.delete("Secret", t.db_ns, f"db-{t.ref}")
        return out

    def delete_namespace(self, ctx: StepContext) -> dict[str, Any]:
        t = self.tenant(ctx.ref, ctx.org)
        removed = self.kube.delete("Namespace", None, t.ns)
        self._wait(f"namespace {t.ns} to go", lambda: self.kube.get("Namespace", None, t.ns) is None)
        return {"removed": removed}
