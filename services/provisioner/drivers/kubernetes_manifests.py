"""The objects the kubernetes driver creates, as plain dicts (no client import). One function
per object; every name is derived from the project ref, so a step run again asks for the very
same objects (create-or-get)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

PART = "supaplatform.io/part"
REF = "supaplatform.io/ref"
ORG = "supaplatform.io/org"
MANAGED = {"app.kubernetes.io/managed-by": "supaplatform-provisioner"}

# A tenant's workloads, their ports and what they are.
POSTGREST_PORT = 3000
GOTRUE_PORT = 9999
EDGE_RUNTIME_PORT = 9000


@dataclass(frozen=True)
class Tenant:
    ref: str
    shared_ns: str
    domain: str
    db_host: str
    db_port: int
    dedicated: bool
    cluster: str  # CNPG Cluster holding the database (shared one, or the tenant's own)
    org: str = ""

    @property
    def ns(self) -> str:
        return f"tenant-{self.ref}"

    @property
    def db_ns(self) -> str:
        return self.ns if self.dedicated else self.shared_ns

    @property
    def owner(self) -> str:
        return f"postgres.{self.ref}"

    @property
    def host(self) -> str:
        return f"{self.ref}.{self.domain}"

    def labels(self, part: str = "tenant") -> dict[str, str]:
        out = {REF: self.ref, PART: part, **MANAGED}
        if self.org:
            out[ORG] = self.org
        return out


def meta(t: Tenant, name: str, namespace: str | None, part: str = "tenant") -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "labels": t.labels(part)}
    if namespace:
        m["namespace"] = namespace
    return m


def namespace(t: Tenant) -> dict[str, Any]:
    m = meta(t, t.ns, None)
    # Pod Security Admission: tenant pods run restricted.
    m["labels"] |= {"pod-security.kubernetes.io/enforce": "restricted"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": m}


def resource_quota(t: Tenant, cpu: str = "4", memory: str = "8Gi", pods: int = 20) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta(t, "tenant-quota", t.ns),
            "spec": {"hard": {"requests.cpu": cpu, "requests.memory": memory, "limits.cpu": str(int(cpu) * 2),
                              "limits.memory": memory, "pods": str(pods), "services": "10",
                              "persistentvolumeclaims": "4" if t.dedicated else "0"}}}


def limit_range(t: Tenant) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": meta(t, "tenant-limits", t.ns),
            "spec": {"limits": [{"type": "Container",
                                 "default": {"cpu": "500m", "memory": "512Mi"},
                                 "defaultRequest": {"cpu": "50m", "memory": "64Mi"},
                                 "max": {"cpu": "2", "memory": "2Gi"}}]}}


def network_policy(t: Tenant) -> dict[str, Any]:
    """Only the shared namespace (Kong, Supavisor, Realtime, Storage, the platform's gateway)
    and the tenant's own pods reach tenant pods; tenant pods reach their own namespace, the
    shared namespace, DNS and the internet (not other tenants)."""
    shared = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": t.shared_ns}}}
    own = {"podSelector": {}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(t, "tenant-isolation", t.ns),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [shared, own]}],
                     "egress": [{"to": [shared, own]},
                                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                                 "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                     "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}}]}]}}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def secret(t: Tenant, name: str, namespace: str, data: dict[str, str], part: str = "tenant") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta(t, name, namespace, part), "type": "Opaque",
            "data": {k: _b64(v) for k, v in sorted(data.items())}}


def db_secret(t: Tenant, password: str) -> dict[str, Any]:
    """The owner role's login in the namespace of the database (CNPG's basic-auth shape)."""
    s = secret(t, f"db-{t.ref}", t.db_ns, {"username": t.owner, "password": password}, part="database")
    s["type"] = "kubernetes.io/basic-auth"
    return s


def database(t: Tenant) -> dict[str, Any]:
    """A CNPG Database in the shared Cluster; deleting the CR drops the database."""
    return {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Database",
            "metadata": meta(t, f"db-{t.ref}", t.shared_ns, "database"),
            "spec": {"name": t.ref, "owner": t.owner, "cluster": {"name": t.cluster},
                     "ensure": "present", "databaseReclaimPolicy": "delete"}}


def dedicated_cluster(t: Tenant, storage: str = "10Gi") -> dict[str, Any]:
    return {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": meta(t, t.cluster, t.ns, "database"),
            "spec": {"instances": 1, "imageName": "ghcr.io/cloudnative-pg/postgresql:15",
                     "enableSuperuserAccess": True,
                     "storage": {"size": storage},
                     "bootstrap": {"initdb": {"database": t.ref, "owner": t.owner,
                                              "secret": {"name": f"db-{t.ref}"}}},
                     "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                   "limits": {"cpu": "1", "memory": "1Gi"}}}}


# psql scripts (psql 15+: \getenv, \gexec). psql interpolates :'var' outside dollar quotes
# only, so the conditional DDL is built with SELECT format(...) and run with \gexec. The owner's
# password is read from the environment (the db-<ref> Secret), never from the manifest or argv.
INIT_ROLES_SQL = r"""
\getenv password OWNER_PASSWORD
SELECT format('CREATE ROLE %I NOLOGIN NOINHERIT', r) FROM unnest(ARRAY['anon', 'authenticated']) AS r
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
SELECT 'CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'owner') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'owner', :'password') \gexec
"""

INIT_SCHEMAS_SQL = r"""
CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION :"owner";
CREATE SCHEMA IF NOT EXISTS storage AUTHORIZATION :"owner";
CREATE SCHEMA IF NOT EXISTS extensions AUTHORIZATION :"owner";
CREATE SCHEMA IF NOT EXISTS _realtime AUTHORIZATION :"owner";
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
GRANT anon, authenticated, service_role TO :"owner";
"""

DROP_ROLES_SQL = r"""
SELECT format('DROP ROLE %I', :'owner') WHERE EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
"""

# The script comes on stdin (-f -), so psql interpolates its variables.
PSQL = 'printf "%s\\n" "$SQL" | psql -X -v ON_ERROR_STOP=1 -v owner="$OWNER" -f -'

SCRIPTS = {"roles": INIT_ROLES_SQL, "schemas": INIT_SCHEMAS_SQL, "drop-roles": DROP_ROLES_SQL}


def sql_job(t: Tenant, what: str, *, image: str = "postgres:15") -> dict[str, Any]:
    """psql as the cluster's superuser (CNPG's <cluster>-superuser Secret), in the database's
    namespace. The owner's password comes from the db-<ref> Secret, never from the manifest."""
    dbname = "postgres" if what in ("roles", "drop-roles") else t.ref
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(t, f"sql-{what}-{t.ref}", t.db_ns, "database"),
            "spec": {"backoffLimit": 4, "ttlSecondsAfterFinished": 600,
                     "template": {"metadata": {"labels": t.labels("database")},
                                  "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                                           "securityContext": {"runAsNonRoot": True, "runAsUser": 999,
                                                               "seccompProfile": {"type": "RuntimeDefault"}},
                                           "containers": [{
                                               "name": "psql", "image": image,
                                               "command": ["sh", "-c", PSQL],
                                               "env": [{"name": "SQL", "value": SCRIPTS[what]},
                                                       {"name": "OWNER", "value": t.owner},
                                                       {"name": "PGHOST", "value": t.db_host},
                                                       {"name": "PGPORT", "value": str(t.db_port)},
                                                       {"name": "PGUSER", "value": "postgres"},
                                                       {"name": "PGDATABASE", "value": dbname},{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                                                           "name": f"{t.cluster}-superuser", "key": "password"}}},
                                                       {"name": "OWNER_PASSWORD", "valueFrom": {"secretKeyRef": {
                                                           "name": f"db-{t.ref}", "key": "password"}}}],
                                               "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                             "limits": {"cpu": "500m", "memory": "256Mi"}},
                                               "securityContext": {"allowPrivilegeEscalation": False,
                                                                   "capabilities": {"drop": ["ALL"]}}}]}}}}


def _container(name: str, image: str, port: int, env: list[dict[str, Any]], *, command: list[str] | None = None,
               probe_path: str = "/") -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image, "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                         "env": env,
                         "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
                         "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 20, "failureThreshold": 6},
                         "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                       "limits": {"cpu": "1", "memory": "512Mi"}},
                         "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                             "capabilities": {"drop": ["ALL"]}}}
    if command:
        c["command"] = command
    return c


def _from_secret(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "tenant", "key": key}}}


def deployment(t: Tenant, app: str, container: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    labels = t.labels() | {"app.kubernetes.io/name": app}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(t, app, t.ns) | {"labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {REF: t.ref, "app.kubernetes.io/name": app}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"automountServiceAccountToken": False,
                                           "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                                               "seccompProfile": {"type": "RuntimeDefault"}},
                                           "containers": [container]}}}}


def service(t: Tenant, app: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(t, app, t.ns),
            "spec": {"type": "ClusterIP", "selector": {REF: t.ref, "app.kubernetes.io/name": app},
                     "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}}


def workloads(t: Tenant, images: dict[str, str], replicas: int = 1) -> list[dict[str, Any]]:
    """PostgREST, GoTrue and the edge runtime (the real images), each a Deployment and a Service."""
    rest = _container("postgrest", images["postgrest"], POSTGREST_PORT, [
        _from_secret("PGRST_DB_URI", "db-uri"), _from_secret("PGRST_JWT_SECRET", "jwt-secret"),
        {"name": "PGRST_DB_SCHEMAS", "value": "public,storage,graphql_public"},
        {"name": "PGRST_DB_ANON_ROLE", "value": "anon"},
        {"name": "PGRST_DB_USE_LEGACY_GUCS", "value": "false"},
        {"name": "PGRST_SERVER_PORT", "value": str(POSTGREST_PORT)}])
    auth = _container("gotrue", images["gotrue"], GOTRUE_PORT, [
        _from_secret("GOTRUE_DB_DATABASE_URL", "db-uri"), _from_secret("GOTRUE_JWT_SECRET", "jwt-secret"),
        {"name": "GOTRUE_DB_DRIVER", "value": "postgres"},
        {"name": "DB_NAMESPACE", "value": "auth"},
        {"name": "GOTRUE_API_HOST", "value": "0.0.0.0"},
        {"name": "PORT", "value": str(GOTRUE_PORT)},
        {"name": "API_EXTERNAL_URL", "value": f"https://{t.host}/auth/v1"},
        {"name": "GOTRUE_SITE_URL", "value": f"https://{t.host}"},
        {"name": "GOTRUE_JWT_EXP", "value": "3600"},
        {"name": "GOTRUE_JWT_AUD", "value": "authenticated"},
        {"name": "GOTRUE_JWT_DEFAULT_GROUP_NAME", "value": "authenticated"}])
    edge = _container("edge-runtime", images["edge_runtime"], EDGE_RUNTIME_PORT, [
        _from_secret("SUPABASE_ANON_KEY", "anon-key"), _from_secret("SUPABASE_SERVICE_ROLE_KEY", "service-role-key"),
        _from_secret("SUPABASE_DB_URL", "db-uri"), _from_secret("JWT_SECRET", "jwt-secret"),
        {"name": "SUPABASE_URL", "value": f"https://{t.host}"}],
        command=["edge-runtime", "start", "--main-service", "/home/deno/functions/main", "--port", str(EDGE_RUNTIME_PORT)])
    out = []
    for app, c, port in (("postgrest", rest, POSTGREST_PORT), ("gotrue", auth, GOTRUE_PORT),
                         ("edge-runtime", edge, EDGE_RUNTIME_PORT)):
        out += [deployment(t, app, c, replicas), service(t, app, port)]
    return out


TENANT_APPS = ("postgrest", "gotrue", "edge-runtime")


# Studio per project, on demand (docs/studio.md): Supabase Studio and its pg-meta, in the
# tenant's namespace, reached only through the gateway's Studio bridge (the namespace's
# NetworkPolicy admits the platform's namespace and the tenant's own pods, nothing else).
STUDIO_PORT = 3000
PG_META_PORT = 8080
STUDIO_APPS = ("pg-meta", "studio")


def studio_workloads(t: Tenant, images: dict[str, str], org_name: str = "") -> list[dict[str, Any]]:
    """pg-meta (on the tenant's own login, from the tenant Secret) and Studio pointed at it."""
    pg_meta = _container("pg-meta", images["pg_meta"], PG_META_PORT, [
        _from_secret("PG_META_DB_URL", "db-uri"),
        {"name": "PG_META_HOST", "value": "0.0.0.0"},
        {"name": "PG_META_PORT", "value": str(PG_META_PORT)}])
    studio = _container("studio", images["studio"], STUDIO_PORT, [
        {"name": "STUDIO_PG_META_URL", "value": f"http://pg-meta.{t.ns}.svc:{PG_META_PORT}"},
        {"name": "SUPABASE_URL", "value": f"https://{t.host}"},
        {"name": "SUPABASE_PUBLIC_URL", "value": f"https://{t.host}"},
        _from_secret("SUPABASE_ANON_KEY", "anon-key"), _from_secret("SUPABASE_SERVICE_KEY", "service-role-key"),
        _from_secret("AUTH_JWT_SECRET", "jwt-secret"),
        {"name": "DEFAULT_ORGANIZATION_NAME", "value": org_name or t.org or "organization"},
        {"name": "DEFAULT_PROJECT_NAME", "value": t.ref},
        {"name": "HOSTNAME", "value": "0.0.0.0"},
        {"name": "NEXT_PUBLIC_ENABLE_LOGS", "value": "false"}])
    studio["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    out: list[dict[str, Any]] = []
    for app, c, port in (("pg-meta", pg_meta, PG_META_PORT), ("studio", studio, STUDIO_PORT)):
        out += [deployment(t, app, c), service(t, app, port)]
    return out
