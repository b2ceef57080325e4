"""Platform settings, read once per process from the environment.

Defaults work on one machine with no configuration at all. Nothing is read at import time:
call `load_settings()` from a process's wiring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
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
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_user: str = "postgres"
    db_password: str = ""
    db_name: str = "supaplatform"
    amqp_host: str = "127.0.0.1"
    amqp_port: int = 5672
    amqp_user: str = "guest"
    amqp_password: str = "guest"
    amqp_vhost: str = "/"
    rabbitmq_management_url: str = "http://127.0.0.1:15672"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    consumer_max_attempts: int = 5
    consumer_retry_base_ms: int = 200
    state_dir: str = "var"
    extra: dict[str, str] = field(default_factory=dict)

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


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    d = Settings()
    return Settings(
        db_host=env.get("PLATFORM_DB_HOST", d.db_host),
        db_port=int(env.get("PLATFORM_DB_PORT", d.db_port)),
        db_user=env.get("PLATFORM_DB_USER", d.db_user),
        db_password=env.get("PLATFORM_DB_PASSWORD", d.db_password),
        db_name=env.get("PLATFORM_DB_NAME", d.db_name),
        amqp_host=env.get("PLATFORM_AMQP_HOST", d.amqp_host),
        amqp_port=int(env.get("PLATFORM_AMQP_PORT", d.amqp_port)),
        amqp_user=env.get("PLATFORM_AMQP_USER", d.amqp_user),
        amqp_password=env.get("PLATFORM_AMQP_PASSWORD", d.amqp_password),
        amqp_vhost=env.get("PLATFORM_AMQP_VHOST", d.amqp_vhost),
        rabbitmq_management_url=env.get("PLATFORM_RABBITMQ_MANAGEMENT_URL", d.rabbitmq_management_url),
        gateway_host=env.get("PLATFORM_GATEWAY_HOST", d.gateway_host),
        gateway_port=int(env.get("PLATFORM_GATEWAY_PORT", d.gateway_port)),
        consumer_max_attempts=int(env.get("PLATFORM_CONSUMER_MAX_ATTEMPTS", d.consumer_max_attempts)),
        consumer_retry_base_ms=int(env.get("PLATFORM_CONSUMER_RETRY_BASE_MS", d.consumer_retry_base_ms)),
        state_dir=env.get("PLATFORM_STATE_DIR", d.state_dir),
    )


def settings_env(s: Settings) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings."""
    return {
        "PLATFORM_DB_HOST": s.db_host,
        "PLATFORM_DB_PORT": str(s.db_port),
        "PLATFORM_DB_USER": s.db_user,
        "PLATFORM_DB_PASSWORD": s.db_password,
        "PLATFORM_DB_NAME": s.db_name,
        "PLATFORM_AMQP_HOST": s.amqp_host,
        "PLATFORM_AMQP_PORT": str(s.amqp_port),
        "PLATFORM_AMQP_USER": s.amqp_user,
        "PLATFORM_AMQP_PASSWORD": s.amqp_password,
        "PLATFORM_AMQP_VHOST": s.amqp_vhost,
        "PLATFORM_RABBITMQ_MANAGEMENT_URL": s.rabbitmq_management_url,
        "PLATFORM_GATEWAY_HOST": s.gateway_host,
        "PLATFORM_GATEWAY_PORT": str(s.gateway_port),
        "PLATFORM_CONSUMER_MAX_ATTEMPTS": str(s.consumer_max_attempts),
        "PLATFORM_CONSUMER_RETRY_BASE_MS": str(s.consumer_retry_base_ms),
        "PLATFORM_STATE_DIR": s.state_dir,
    }
