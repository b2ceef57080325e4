"""Platform settings, read once per process from the environment.

Defaults work on one machine with no configuration at all. Nothing is read at import time:
call `load_settings()` from a process's wiring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from urllib.parse import quote

SERVICES: tuple[str, ...] = (
    "orgs",
    "projects",
    "provisioner",
    "functions",
    "realtime",
    "metering",
    "billing",
)


@dataclass(frozen=True)
class Settings:
    """Every setting is read from the environment variable PLATFORM_<NAME IN CAPITALS>."""

    db_host: str = field(default="127.0.0.1", metadata={"doc": "PostgreSQL host (platform database and tenants)"})
    db_port: int = field(default=5432, metadata={"doc": "PostgreSQL port"})
    db_user: str = field(default="postgres", metadata={"doc": "PostgreSQL user"})
    db_password: str = field(default="", metadata={"doc": "PostgreSQL password (empty: trust auth)", "secret": True})
    db_name: str = field(default="supaplatform", metadata={"doc": "Platform database; each service owns one schema in it"})
    amqp_host: str = field(default="127.0.0.1", metadata={"doc": "RabbitMQ host"})
    amqp_port: int = field(default=5672, metadata={"doc": "RabbitMQ AMQP port"})
    amqp_user: str = field(default="guest", metadata={"doc": "RabbitMQ user"})
    amqp_password: str = field(default="guest", metadata={"doc": "RabbitMQ password", "secret": True})
    amqp_vhost: str = field(default="/", metadata={"doc": "RabbitMQ virtual host"})
    rabbitmq_management_url: str = field(default="http://127.0.0.1:15672", metadata={"doc": "RabbitMQ management API (status, replay, tests)"})
    gateway_host: str = field(default="127.0.0.1", metadata={"doc": "Address the gateway listens on"})
    gateway_port: int = field(default=8080, metadata={"doc": "Port the gateway listens on"})
    public_url: str = field(default="http://127.0.0.1:8080", metadata={"doc": "Base URL users reach the gateway at (links in emails)"})
    cookie_secure: bool = field(default=False, metadata={"doc": "Mark session cookies Secure (set true behind HTTPS)"})
    session_ttl_hours: int = field(default=24 * 7, metadata={"doc": "Web session lifetime"})
    invitation_ttl_hours: int = field(default=24, metadata={"doc": "How long an invitation link stays valid"})
    mail_backend: str = field(default="outbox", metadata={"doc": "outbox (write mail to <state_dir>/mail) or smtp"})
    mail_from: str = field(default="Supaplatform <no-reply@localhost>", metadata={"doc": "From address of platform mail"})
    smtp_host: str = field(default="127.0.0.1", metadata={"doc": "SMTP server (mail_backend=smtp)"})
    smtp_port: int = field(default=25, metadata={"doc": "SMTP port"})
    smtp_user: str = field(default="", metadata={"doc": "SMTP user (empty: no login)"})
    smtp_password: str = field(default="", metadata={"doc": "SMTP password", "secret": True})
    smtp_starttls: bool = field(default=False, metadata={"doc": "Use STARTTLS with the SMTP server"})
    password_hash_time_cost: int = field(default=3, metadata={"doc": "argon2id iterations for password hashes"})
    password_hash_memory_kib: int = field(default=65536, metadata={"doc": "argon2id memory per password hash (KiB)"})
    secret_key: str = field(default="", metadata={"doc": "Master key (urlsafe base64, 32 bytes) that encrypts secrets at rest; empty: generated once into <state_dir>/master.key", "secret": True})
    storage_backend: str = field(default="local", metadata={"doc": "Where tenant buckets live: local (files under <state_dir>/storage) or s3"})
    s3_endpoint_url: str = field(default="", metadata={"doc": "S3 API endpoint (storage_backend=s3); empty: AWS's default"})
    s3_region: str = field(default="us-east-1", metadata={"doc": "S3 region"})
    s3_access_key: str = field(default="", metadata={"doc": "S3 access key id"})
    s3_secret_key: str = field(default="", metadata={"doc": "S3 secret access key", "secret": True})
    tenant_db_host: str = field(default="127.0.0.1", metadata={"doc": "Host tenants connect to for their databases (local driver)"})
    tenant_db_port: int = field(default=5432, metadata={"doc": "Port tenants connect to for their databases"})
    provisioner_driver: str = field(default="local", metadata={"doc": "Tenant infrastructure driver: local (this machine) or kubernetes"})
    consumer_max_attempts: int = field(default=8, metadata={"doc": "Deliveries of a failing message before it is dead-lettered"})
    consumer_retry_base_ms: int = field(default=500, metadata={"doc": "First retry delay; doubles per attempt"})
    state_dir: str = field(default="var", metadata={"doc": "Local state: logs, mail outbox (relative to the repo root)"})

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

    def eventstore_env(self, service: str) -> dict[str, str]:
        """eventsourcing's configuration for one service's store: its own schema."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.db_name,
            "POSTGRES_HOST": self.db_host,
            "POSTGRES_PORT": str(self.db_port),
            "POSTGRES_USER": self.db_user,
            "POSTGRES_PASSWORD": self.db_password,
            "POSTGRES_SCHEMA": service,
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "8",
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
    return Settings(**values)  # type: ignore[arg-type]


def settings_env(s: Settings) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    out = {}
    for f in fields(Settings):
        v = getattr(s, f.name)
        out[env_name(f.name)] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out
