"""The platform's own credentials on PostgreSQL and RabbitMQ: a dedicated role and user with
generated passwords, never the passwordless `postgres` over loopback trust nor `guest`.

`ensure(settings)` (run by `make run`/`make test` through scripts/ensure_infra.sh, by
`platform-run` and by the test suite) makes sure they exist and work, creating them on the
first start with the machine's admin access (`db_admin_*`, `rabbitmq_admin_*`: used only
then, or when the stored password no longer works), and stores them in one file per OS user
(`credentials_file`, default `$XDG_STATE_HOME/supaplatform/credentials.json`, mode 0600 in
a 0700 folder). Why one machine-level file and not one per checkout: several checkouts (and
CI's clean clone) share this machine's PostgreSQL and RabbitMQ; two files would rotate each
other's passwords. Creation holds an exclusive lock on the file's `.lock` beside it, so two
`make test` started at once create them once. Entries are keyed by server (host:port), so
one file serves several clusters.

`stored_passwords(settings)` is what `load_settings()` reads when no password is given in
the environment. Passwords travel to child processes in their environment (settings_env),
never in argv, and never in a log line.

Imports the standard library; psycopg and requests only when creating.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from .settings import Settings, env_name

log = logging.getLogger("platform.credentials")


class CredentialsError(RuntimeError):
    """The platform's credentials could not be created or do not work; says what to do."""


def credentials_path(settings: Settings) -> Path:
    if settings.credentials_file:
        return Path(settings.credentials_file).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "supaplatform" / "credentials.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Atomically, 0600 from the first byte (the temporary file is created so)."""
    fd, tmp = tempfile.mkstemp(prefix=".credentials.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _pg_key(s: Settings) -> str:
    return f"{s.db_host}:{s.db_port}"


def _mq_key(s: Settings) -> str:
    return f"{s.amqp_host}:{s.amqp_port}"


def stored_passwords(settings: Settings) -> dict[str, str]:
    """The stored passwords of the configured users, if the file has them."""
    data = _read(credentials_path(settings))
    out: dict[str, str] = {}
    pg = (data.get("postgres") or {}).get(_pg_key(settings)) or {}
    if pg.get("user") == settings.db_user and pg.get("password"):
        out["db_password"] = str(pg["password"])
    mq = (data.get("rabbitmq") or {}).get(_mq_key(settings)) or {}
    if mq.get("user") == settings.amqp_user and mq.get("password"):
        out["amqp_password"] = str(mq["password"])
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path.parent, 0o700)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- PostgreSQL -------------------------------------------------------------------------------

def _pg_login_works(s: Settings, user: str, password: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(host=s.db_host, port=s.db_port, user=user, password=password, dbname="postgres",
                             connect_timeout=5, application_name="platform-credentials"):
            return True
    except psycopg.OperationalError as exc:
        text = str(exc)
        if "password authentication failed" in text or "does not exist" in text or "no password" in text:
            return False
        raise CredentialsError(f"cannot reach PostgreSQL at {_pg_key(s)} to check the platform's role: "
                               f"{text.strip().splitlines()[-1] if text.strip() else exc!r}") from None


def _pg_create(s: Settings, user: str, password: str) -> None:
    """Create (or reset the password of) the platform's role, as the machine's admin.

    SUPERUSER: the provisioner creates tenant databases and roles, dumps and restores them
    and terminates their sessions. On PostgreSQL 15 a CREATEROLE role can grant itself
    pg_execute_server_program, i.e. a shell, so a NOSUPERUSER role would look safer without
    being so; what protects the platform's role is its password (SCRAM only, pg_hba) and
    that tenant code cannot reach the server except through the runtime's checked path."""
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(host=s.db_host, port=s.db_port, user=s.db_admin_user,
                               password=s.db_admin_password or None, dbname="postgres", connect_timeout=5,
                               autocommit=True, application_name="platform-credentials")
    except psycopg.OperationalError as exc:
        raise CredentialsError(
            f"the platform's PostgreSQL role {user!r} must be created once with admin access, and logging in "
            f"as {s.db_admin_user!r} at {_pg_key(s)} failed ({str(exc).strip().splitlines()[-1]}); set "
            f"{env_name('db_admin_user')}/{env_name('db_admin_password')}, or create the role yourself and put "
            f"its password in {credentials_path(s)} (docs/deployment.md)") from None
    with conn:
        verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256").decode()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('supaplatform:platform-role'))")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} WITH LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(verifier)))


# -- RabbitMQ ---------------------------------------------------------------------------------

def _mq_login_works(s: Settings, user: str, password: str) -> bool:
    import requests

    base = s.rabbitmq_management_url.rstrip("/")
    try:
        r = requests.get(f"{base}/api/whoami", auth=(user, password), timeout=5)
    except requests.RequestException as exc:
        raise CredentialsError(f"cannot reach RabbitMQ's management API at {base}: {exc}") from None
    return r.status_code == 200 and "administrator" in str(r.json().get("tags", ""))


def _mq_create(s: Settings, user: str, password: str) -> None:
    """Create (or reset the password of) the platform's user, as the broker's admin.

    Tagged administrator: the platform creates virtual hosts (the test suite one per run,
    operators one per platform) and reads queues through the management API. Permissions:
    the default vhost `/` now; RabbitAdmin.create_vhost grants each vhost it creates."""
    import requests
    from urllib.parse import quote

    base = s.rabbitmq_management_url.rstrip("/") + "/api"
    admin = (s.rabbitmq_admin_user, s.rabbitmq_admin_password)
    try:
        r = requests.put(f"{base}/users/{quote(user, safe='')}", auth=admin, timeout=10,
                         json={"password": password, "tags": "administrator"})
        if r.status_code in (401, 403):
            raise CredentialsError(
                f"the platform's RabbitMQ user {user!r} must be created once with admin access, and "
                f"{s.rabbitmq_admin_user!r} was refused by {base}; set {env_name('rabbitmq_admin_user')}/"
                f"{env_name('rabbitmq_admin_password')}, or create the user yourself and put its password in "
                f"{credentials_path(s)} (docs/deployment.md)")
        r.raise_for_status()
        requests.put(f"{base}/permissions/%2F/{quote(user, safe='')}", auth=admin, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    except requests.RequestException as exc:
        raise CredentialsError(f"creating the platform's RabbitMQ user at {base} failed: {exc}") from None


# -- both -------------------------------------------------------------------------------------

def ensure(settings: Settings, environ: dict[str, str] | None = None) -> Settings:
    """Make sure the platform's role and user exist with the stored passwords (creating
    either on first use); returns the settings with those passwords. A password given in
    the environment (PLATFORM_DB_PASSWORD / PLATFORM_AMQP_PASSWORD) is the operator's:
    used as it is, nothing created."""
    env = os.environ if environ is None else environ
    manage_pg = env_name("db_password") not in env
    manage_mq = env_name("amqp_password") not in env
    if not (manage_pg or manage_mq):
        return settings
    path = credentials_path(settings)
    with _locked(path):
        data = _read(path)
        changed = False
        out = settings
        if manage_pg:
            entries = data.setdefault("postgres", {})
            entry = entries.get(_pg_key(settings)) or {}
            user = settings.db_user
            password = entry.get("password") if entry.get("user") == user else None
            if not password or not _pg_login_works(settings, user, password):
                password = password or secrets.token_urlsafe(32)
                _pg_create(settings, user, password)
                if not _pg_login_works(settings, user, password):
                    raise CredentialsError(f"created PostgreSQL role {user!r} but cannot log in with it")
                entries[_pg_key(settings)] = {"user": user, "password": password}
                changed = True
                log.info("PostgreSQL role %s ready at %s", user, _pg_key(settings))
            out = replace(out, db_password=password)
        if manage_mq:
            entries = data.setdefault("rabbitmq", {})
            entry = entries.get(_mq_key(settings)) or {}
            user = settings.amqp_user
            password = entry.get("password") if entry.get("user") == user else None
            if not password or not _mq_login_works(settings, user, password):
                password = password or secrets.token_urlsafe(32)
                _mq_create(settings, user, password)
                if not _mq_login_works(settings, user, password):
                    raise CredentialsError(f"created RabbitMQ user {user!r} but cannot log in with it")
                entries[_mq_key(settings)] = {"user": user, "password": password}
                changed = True
                log.info("RabbitMQ user %s ready at %s", user, _mq_key(settings))
            out = replace(out, amqp_password=password)
        if changed or (path.exists() and path.stat().st_mode & 0o077):
            _write(path, data)
    return out


def main() -> None:
    """`python -m services.shared.credentials`: what scripts/ensure_infra.sh runs."""
    from .settings import load_settings

    logging.basicConfig(level=logging.INFO, format="[credentials] %(message)s")
    try:
        settings = ensure(load_settings())
    except CredentialsError as exc:
        print(f"[credentials] ERROR: {exc}", file=sys.stderr)
        raise SystemExit(1)
    print(f"[credentials] platform role {settings.db_user!r} and broker user {settings.amqp_user!r} ready "
          f"({credentials_path(settings)})")


if __name__ == "__main__":
    main()
