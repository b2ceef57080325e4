"""The local driver: tenants on this machine's PostgreSQL (one database per project, with
Supabase's roles and schemas) and buckets on the configured object store.

Per tenant `<ref>` it creates:
- roles `postgres.<ref>` (LOGIN, the user's db_pass as a SCRAM verifier; owns the database),
  `authenticator.<ref>` (LOGIN NOINHERIT, PostgREST's login: the password the projects
  service keeps encrypted for it, member of anon/authenticated/
  service_role) and the NOLOGIN group `<ref>`; both logins are members of `<ref>` and of
  `supaplatform_tenants`. pg_hba.conf (scripts/ensure_infra.sh) makes members of
  `supaplatform_tenants` use scram-sha-256 and lets them reach only the database named
  like a group they belong to (`samerole`): the db_pass opens the tenant's database only;
- database `<ref>` with CONNECT revoked from PUBLIC and granted to the tenant's logins,
  schemas auth, storage, realtime (Supabase's realtime.messages and realtime.topic() for
  private channels) and extensions (uuid-ossp and pgcrypto in it), the
  supabase_realtime publication, and grants to anon/authenticated/service_role on public;
- bucket `sp-<ref>` (backups of paused databases go to `_platform/backups/` in it).

Cluster-wide NOLOGIN roles anon, authenticated, service_role and supaplatform_tenants are
created once, when missing, and never dropped. Every step is create-or-get.
Imports psycopg, the standard library, the storage port and shared settings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import stringprep
import subprocess
import threading
import time
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
from psycopg import sql

from services.shared.settings import Settings

from services.shared.crypto import SecretBox, secret_box

from .. import logins
from ..storage import ObjectStore, StorageError, state_path
from .base import Driver, StepContext, StepError
from .tenant_sql import AUTH_SQL, GRANTS_SQL, REALTIME_OWNERSHIP_SQL, REALTIME_SQL, STORAGE_SQL

log = logging.getLogger("provisioner.local")

REF_RE = re.compile(r"^[a-z]{20}$")
API_ROLES = ("anon", "authenticated", "service_role")
TENANTS_GROUP = "supaplatform_tenants"
BACKUP_PREFIX = "_platform/backups/"
LATEST_BACKUP = BACKUP_PREFIX + "LATEST"
# Each tenant login may hold this many connections: one tenant cannot exhaust a shared cluster.
TENANT_CONNECTION_LIMIT = 20
SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations
# A line of `pg_restore -l`: "<id>; <tableoid> <oid> <DESC> <schema> <name> <owner>" (the owner
# last; empty for extensions).
TOC_LINE = re.compile(r"^\d+; \d+ \d+ (.*)$")

# What every tenant database contains before its owner is known: run in each new database,
# or ahead of time in spare databases.
STRUCTURE_SQL = """
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS storage;
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    CREATE PUBLICATION supabase_realtime;
  END IF;
END $$;
"""

# What depends on the tenant's owner role; run in every new database (and is idempotent).
OWNERSHIP_SQL = """
ALTER SCHEMA auth OWNER TO {owner};
ALTER SCHEMA storage OWNER TO {owner};
ALTER SCHEMA extensions OWNER TO {owner};
ALTER PUBLICATION supabase_realtime OWNER TO {owner};
GRANT USAGE ON SCHEMA public, auth, storage, extensions TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL ROUTINES IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT ALL ON ROUTINES TO anon, authenticated, service_role;
"""

# What the project APIs rely on (run in every new database, idempotent; owned by the
# platform's role so tenant code cannot redefine them): schema changes tell PostgREST to
# reload its schema cache (`NOTIFY pgrst`, as Supabase's event triggers do), and auth.uid(),
# auth.role(), auth.email(), auth.jwt() read the caller's JWT claims as Supabase defines them.
API_SQL = """
CREATE SCHEMA IF NOT EXISTS graphql_public;
GRANT USAGE ON SCHEMA graphql_public TO anon, authenticated, service_role;
CREATE OR REPLACE FUNCTION extensions.pgrst_watch() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  NOTIFY pgrst, 'reload schema';
END $$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgrst_ddl_watch') THEN
    CREATE EVENT TRIGGER pgrst_ddl_watch ON ddl_command_end EXECUTE FUNCTION extensions.pgrst_watch();
  END IF;
  IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'pgrst_drop_watch') THEN
    CREATE EVENT TRIGGER pgrst_drop_watch ON sql_drop EXECUTE FUNCTION extensions.pgrst_watch();
  END IF;
END $$;
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid
$$;
CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text
$$;
CREATE OR REPLACE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.email', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email'))::text
$$;
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb
$$;
"""

# Spare databases: built ahead (STRUCTURE_SQL done, CONNECT revoked from PUBLIC), ready when
# they stop allowing connections; a create renames one (~10 ms) instead of copying template0
# (~150-300 ms, more under concurrent creates). A prepared template database was measured
# too: no faster than template0 plus STRUCTURE_SQL (docs/provisioning.md).
SPARE_PREFIX = "supaplatform_spare_" + hashlib.sha256(STRUCTURE_SQL.encode()).hexdigest()[:10] + "_"


# -- names ------------------------------------------------------------------------------------

def check_ref(ref: str) -> str:
    if not isinstance(ref, str) or not REF_RE.match(ref):
        raise StepError(f"invalid project ref {ref!r}", permanent=True)
    return ref


def owner_role(ref: str) -> str:
    return f"postgres.{ref}"


def authenticator_role(ref: str) -> str:
    return f"authenticator.{ref}"


def group_role(ref: str) -> str:
    """Named like the database: pg_hba's `samerole` admits members to that database only."""
    return ref


def bucket_name(ref: str) -> str:
    return f"sp-{ref}"


def staging_database(ref: str) -> str:
    return f"{ref}_restoring"


def backup_key(operation_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", operation_id)
    return f"{BACKUP_PREFIX}{safe}.dump"


# -- passwords --------------------------------------------------------------------------------

def saslprep(password: str) -> str:
    """RFC 4013 SASLprep, as PostgreSQL applies it before hashing. Like PostgreSQL, a
    password SASLprep prohibits is used as it is."""
    if password.isascii():
        return password
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c))
    norm = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9, stringprep.in_table_a1)
    if any(check(c) for c in norm for check in prohibited):
        return password
    if any(stringprep.in_table_d1(c) for c in norm):
        # Bidirectional text: must start and end with RandALCat and contain no LCat.
        if not (stringprep.in_table_d1(norm[0]) and stringprep.in_table_d1(norm[-1])) or \
                any(stringprep.in_table_d2(c) for c in norm):
            return password
    return norm


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password`. Computed here so the
    plaintext never travels in a statement (or lands in a server log)."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


# -- errors -----------------------------------------------------------------------------------

def _pg_reason(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = (primary or str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect_reason(exc: psycopg.OperationalError) -> str:
    """'connection refused' out of psycopg's multi-line 'connection to server ... failed: ...'."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    m = re.search(r'failed: (?!.*failed: )(.*)$', text)
    reason = re.sub(r"^(FATAL|ERROR):\s*", "", (m.group(1) if m else text).strip())
    return reason[:1].lower() + reason[1:] if reason else "unknown error"


class LocalDriver(Driver):
    name = "local"
    PLANS = {
        "create": ("prepare_cluster", "create_roles", "create_database", "configure_database",
                   "create_bucket", "check_health"),
        "pause": ("block_connections", "backup_database", "drop_database"),
        "restore": ("restore_database", "grant_access", "check_health"),
        "delete": ("drop_database", "drop_roles", "delete_bucket"),
    }

    def __init__(self, settings: Settings, store: ObjectStore, *, spare_databases: int = 0,
                 tmp_dir: Path | None = None, restore_jobs: int = 2, keep_idle: int = 0):
        self.settings = settings
        self.store = store
        self.spare_databases = spare_databases
        self.restore_jobs = restore_jobs
        self.tmp_dir = tmp_dir or state_path(settings, "tmp", "provisioner")
        self._cluster_ready = False
        # Superuser connections to the maintenance database kept open between steps (at
        # most `keep_idle`): a new backend costs a fork and its start-up (~3-5 ms of the
        # server's CPU), and a create takes three such steps. 0: a new one every time.
        self.keep_idle = keep_idle
        self._idle: list[tuple[psycopg.Connection, float]] = []
        self._idle_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"PostgreSQL at {self.settings.db_host}:{self.settings.db_port}"

    @contextmanager
    def _admin(self, dbname: str = "postgres", *, autocommit: bool = True) -> Iterator[psycopg.Connection]:
        """A superuser connection (autocommit, or one transaction for the block); psycopg
        errors become StepErrors a user can read. Connections to the maintenance database
        are reused (see `keep_idle`) when the block ended cleanly."""
        conn = self._checkout(dbname)
        clean = False
        try:
            if autocommit:
                yield conn
            else:
                with conn.transaction():
                    yield conn
            clean = True
        except psycopg.OperationalError as exc:
            raise StepError(f"lost the connection to {self.where} ({_connect_reason(exc)})") from None
        except psycopg.Error as exc:
            raise StepError(f"{self.where} refused: {_pg_reason(exc)}") from None
        finally:
            self._checkin(conn, dbname, clean)

    def _checkout(self, dbname: str) -> psycopg.Connection:
        if dbname == "postgres" and self.keep_idle > 0:
            with self._idle_lock:
                idle = self._idle.pop() if self._idle else None
            if idle is not None:
                conn, since = idle
                if time.monotonic() - since < 30:
                    return conn
                try:  # idle a while: make sure the server has not closed it
                    conn.execute("SELECT 1")
                    return conn
                except psycopg.Error:
                    conn.close()
        try:
            return psycopg.connect(self.settings.conninfo_for(dbname), autocommit=True, connect_timeout=5,
                                   application_name="provisioner")
        except psycopg.OperationalError as exc:
            raise StepError(f"could not connect to {self.where} ({_connect_reason(exc)})") from None

    def _checkin(self, conn: psycopg.Connection, dbname: str, clean: bool) -> None:
        if (clean and dbname == "postgres" and not conn.closed and not conn.broken
                and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE):
            with self._idle_lock:
                if len(self._idle) < self.keep_idle:
                    self._idle.append((conn, time.monotonic()))
                    return
        conn.close()

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def _database_exists(self, conn: psycopg.Connection, name: str) -> bool:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def _role_exists(self, conn: psycopg.Connection, name: str) -> bool:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None

    def _pg_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.settings.db_password:
            env["PGPASSWORD"] = self.settings.db_password
        return env

    def _pg_tool(self, argv: list[str], what: str, timeout: float = 3600) -> None:
        base = ["-h", self.settings.db_host, "-p", str(self.settings.db_port), "-U", self.settings.db_user,
                "--no-password"]
        try:
            done = subprocess.run([argv[0], *base, *argv[1:]], env=self._pg_env(), capture_output=True,
                                  timeout=timeout, check=False)
        except FileNotFoundError:
            raise StepError(f"{what}: {argv[0]} is not installed on the provisioner's machine") from None
        except subprocess.TimeoutExpired:
            raise StepError(f"{what}: gave up after {timeout:.0f} s") from None
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            detail = next((line for line in err if "error" in line.lower()), err[0] if err else "")
            raise StepError(f"{what} failed: {detail.removeprefix(argv[0] + ': ')}".rstrip(": "))

    def _tmp_file(self, name: str) -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{name}.{secrets.token_hex(4)}"

    def sweep_tmp(self, older_than_s: float = 3600) -> int:
        """Remove dumps left by a provisioner that died mid-transfer."""
        removed = 0
        if self.tmp_dir.is_dir():
            for p in self.tmp_dir.iterdir():
                if p.is_file() and time.time() - p.stat().st_mtime > older_than_s:
                    p.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _lock_down(self, conn: psycopg.Connection, db: str, ref: str) -> None:
        """Only the tenant's logins may connect to (or create temp tables in) `db`."""
        conn.execute(sql.SQL(
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC; "
            "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {owner}, {auth}; "
            "ALTER DATABASE {db} SET search_path TO \"$user\", public, extensions"
        ).format(db=sql.Identifier(db), owner=sql.Identifier(owner_role(ref)),
                 auth=sql.Identifier(authenticator_role(ref))))
        # The Auth and Storage APIs' logins (absent for projects made before they existed).
        for role in (logins.login_role(s, ref) for s in logins.SERVICES):
            if self._role_exists(conn, role):
                conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}").format(
                    db=sql.Identifier(db), role=sql.Identifier(role)))

    def _create_closed_database(self, conn: psycopg.Connection, db: str, ref: str, template: str) -> bool:
        """CREATE DATABASE that nobody can connect to yet (see `_open_to_tenant`). False if
        it already existed."""
        try:
            conn.execute(sql.SQL("CREATE DATABASE {db} OWNER {owner} TEMPLATE {tpl} ALLOW_CONNECTIONS false").format(
                db=sql.Identifier(db), owner=sql.Identifier(owner_role(ref)), tpl=sql.Identifier(template)))
            return True
        except psycopg.errors.DuplicateDatabase:
            return False  # an earlier attempt (or a runner that crashed) got this far

    def _open_to_tenant(self, conn: psycopg.Connection, db: str, ref: str) -> None:
        """Hand a closed database to the tenant: its owner, an ACL that admits only the
        tenant's logins, and only then connections, so no one else can slip a session in."""
        conn.execute(sql.SQL("ALTER DATABASE {db} OWNER TO {owner}").format(
            db=sql.Identifier(db), owner=sql.Identifier(owner_role(ref))))
        self._lock_down(conn, db, ref)
        conn.execute(sql.SQL("ALTER DATABASE {db} ALLOW_CONNECTIONS true").format(db=sql.Identifier(db)))

    def _claim_spare(self, conn: psycopg.Connection, ref: str) -> str | None:
        """Rename a ready spare database to `ref`; None if there is none left."""
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) AND NOT datallowconn "
                            "ORDER BY random()", (SPARE_PREFIX,)).fetchall()
        for (name,) in rows:
            try:
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name),
                                                                            sql.Identifier(ref)))
                return str(name)
            except (psycopg.errors.InvalidCatalogName, psycopg.errors.ObjectInUse):
                continue  # another saga took it first
        return None

    def maintain(self, stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Keep `spare_databases` ready spares on the cluster (shared by every provisioner
        on it; one builds at a time). Spares left half-built by a crash are dropped. Stops
        between two spares when `stop()` says so (sagas are running: the rest waits)."""
        if self.spare_databases <= 0:
            return {}
        built = 0
        with self._admin() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext('supaplatform:spares'))").fetchone()
            if not (row and row[0]):
                return {}
            try:
                rows = conn.execute("SELECT datname, datallowconn FROM pg_database WHERE starts_with(datname, %s)",
                                    (SPARE_PREFIX,)).fetchall()
                for name, open_ in rows:
                    if open_:  # still being built when its builder died: builders hold the lock
                        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                ready = sum(1 for _, open_ in rows if not open_)
                while ready + built < self.spare_databases and not stop():
                    name = SPARE_PREFIX + secrets.token_hex(4)
                    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
                    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
                    with self._admin(name) as spare:
                        spare.execute(STRUCTURE_SQL)
                    conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
                    built += 1
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext('supaplatform:spares'))")
        return {"spares_built": built}

    def _drop_database(self, conn: psycopg.Connection, db: str) -> bool:
        existed = self._database_exists(conn, db)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {db} WITH (FORCE)").format(db=sql.Identifier(db)))
        return existed

    # -- the port ---------------------------------------------------------------------------
    def connection_info(self, ref: str) -> dict[str, Any]:
        return {"db_host": self.settings.tenant_db_host, "db_port": self.settings.tenant_db_port,
                "db_name": ref, "db_user": owner_role(ref), "bucket": bucket_name(ref)}

    def check_tenant(self, ref: str) -> dict[str, dict[str, Any]]:
        check_ref(ref)
        db: dict[str, Any]
        try:
            with psycopg.connect(self.settings.conninfo_for(ref), autocommit=True, connect_timeout=3,
                                 application_name="provisioner:health") as conn:
                conn.execute("SELECT 1")
            db = {"healthy": True, "status": "ACTIVE_HEALTHY"}
        except psycopg.OperationalError as exc:
            reason = _connect_reason(exc)
            if "does not exist" in reason:
                reason = "the database does not exist (paused or deleted)"
            db = {"healthy": False, "status": "UNHEALTHY", "error": reason}
        storage: dict[str, Any]
        try:
            if self.store.bucket_exists(bucket_name(ref)):
                storage = {"healthy": True, "status": "ACTIVE_HEALTHY"}
            else:
                storage = {"healthy": False, "status": "UNHEALTHY",
                           "error": f"bucket {bucket_name(ref)} does not exist"}
        except StorageError as exc:
            storage = {"healthy": False, "status": "UNHEALTHY", "error": str(exc)}
        return {"db": db, "storage": storage}

    def compensate(self, operation: str, ctx: StepContext, completed: list[str]) -> str | None:
        # A pause that failed before dropping the database leaves it blocked: let the tenant back in.
        if operation == "pause" and "block_connections" in completed and "drop_database" not in completed:
            with self._admin() as conn:
                if self._database_exists(conn, ctx.ref):
                    self._lock_down(conn, ctx.ref, ctx.ref)
                    return "connections to the database re-enabled"
        return None

    def describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, psycopg.OperationalError):
            return f"could not connect to {self.where} ({_connect_reason(exc)})"
        if isinstance(exc, psycopg.Error):
            return f"{self.where} refused: {_pg_reason(exc)}"
        if isinstance(exc, StorageError):
            return str(exc)
        return super().describe_error(exc)

    # -- create -----------------------------------------------------------------------------
    def prepare_cluster(self, ctx: StepContext) -> dict[str, Any]:
        """The cluster-wide roles every tenant shares, created once."""
        if self._cluster_ready:
            return {}
        wanted = {"anon": "NOLOGIN NOINHERIT", "authenticated": "NOLOGIN NOINHERIT",
                  "service_role": "NOLOGIN NOINHERIT BYPASSRLS", TENANTS_GROUP: "NOLOGIN"}
        with self._admin(autocommit=False) as conn:
            present = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                                  (list(wanted),))}
            if set(wanted) - present:
                # Concurrent sagas (and other platforms on this cluster) race to create them.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('supaplatform:cluster-roles'))")
                for role, attrs in wanted.items():
                    if not self._role_exists(conn, role):
                        conn.execute(sql.SQL("CREATE ROLE {} " + attrs).format(sql.Identifier(role)))
        self._cluster_ready = True
        return {}

    def create_roles(self, ctx: StepContext) -> dict[str, Any]:
        ref = check_ref(ctx.ref)
        creds = ctx.credentials()
        db_pass = creds.get("db_pass")
        # PostgREST's login: the password the projects service keeps (encrypted) for it.
        # Projects created before that have none: the edge sets its own when it starts REST.
        auth_pass = creds.get("authenticator_pass") or secrets.token_urlsafe(32)
        if not isinstance(db_pass, str) or not db_pass:
            raise StepError("the project has no database password", permanent=True)
        owner, auth, group = owner_role(ref), authenticator_role(ref), group_role(ref)
        with self._admin(autocommit=False) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"supaplatform:tenant:{ref}",))
            for role in (group, owner, auth):
                if not self._role_exists(conn, role):
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            ident = {"owner": sql.Identifier(owner), "auth": sql.Identifier(auth), "group": sql.Identifier(group),
                     "limit": sql.Literal(TENANT_CONNECTION_LIMIT)}
            conn.execute(sql.SQL("ALTER ROLE {owner} WITH LOGIN INHERIT CONNECTION LIMIT {limit} PASSWORD {pw}").format(
                pw=sql.Literal(scram_verifier(db_pass)), **ident))
            conn.execute(sql.SQL("ALTER ROLE {auth} WITH LOGIN NOINHERIT CONNECTION LIMIT {limit} "
                                 "PASSWORD {pw}").format(pw=sql.Literal(scram_verifier(auth_pass)),
                                                         **ident))
            conn.execute(sql.SQL(
                "GRANT anon, authenticated, service_role TO {owner}, {auth}; "
                "GRANT {group} TO {owner}, {auth}; "
                "GRANT " + TENANTS_GROUP + " TO {owner}, {auth}"
            ).format(**ident))
            services = self._create_service_logins(conn, ref)
        return {"roles": [owner, auth, group, *services]}

    def _box(self) -> SecretBox:
        if getattr(self, "_secret_box", None) is None:
            self._secret_box = secret_box(self.settings)
        return self._secret_box

    def _create_service_logins(self, conn: psycopg.Connection, ref: str) -> list[str]:
        """The Auth, Storage and Realtime APIs' own logins: random passwords stored encrypted
        as the role's comment (services/provisioner/logins.py), their SCRAM verifiers here.
        The storage and realtime logins switch to the caller's role (anon/authenticated/
        service_role) per request, as Supabase Storage and Realtime do."""
        made = []
        for service in logins.SERVICES:
            role = logins.login_role(service, ref)
            if not self._role_exists(conn, role):
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            password = logins.ensure_password(conn, self._box(), ref, role)
            ident = {"role": sql.Identifier(role), "owner": sql.Identifier(owner_role(ref)),
                     "group": sql.Identifier(group_role(ref)), "limit": sql.Literal(TENANT_CONNECTION_LIMIT)}
            conn.execute(sql.SQL("ALTER ROLE {role} WITH LOGIN NOINHERIT CONNECTION LIMIT {limit} PASSWORD {pw}").format(
                pw=sql.Literal(scram_verifier(password)), **ident))
            conn.execute(sql.SQL("GRANT {group} TO {role}; GRANT " + TENANTS_GROUP + " TO {role}").format(**ident))
            if service == "realtime":
                # Logical decoding through SQL needs REPLICATION. The tenant's owner is not
                # made a member (SET ROLE would hand the attribute to the tenant, who could
                # then keep slots that hold WAL back on the shared cluster). pg_hba admits
                # the login to its own database only and has no `replication` line, so it
                # cannot open a physical replication connection.
                conn.execute(sql.SQL("ALTER ROLE {role} WITH REPLICATION").format(**ident))
            else:
                conn.execute(sql.SQL("GRANT {role} TO {owner}").format(**ident))
            if service in ("storage", "realtime"):
                conn.execute(sql.SQL("GRANT anon, authenticated, service_role TO {role}").format(**ident))
            made.append(role)
        return made

    def tenant_login(self, ref: str, service: str) -> dict[str, Any]:
        """Where and as whom the project's `service` API (auth, storage) reaches its database."""
        check_ref(ref)
        if service not in logins.SERVICES:
            raise StepError(f"no login for {service!r}", permanent=True)
        role = logins.login_role(service, ref)
        with self._admin() as conn:
            password = logins.read_password(conn, self._box(), ref, role)
        if password is None:
            raise StepError(f"project {ref} has no {service} login", permanent=True)
        return {"host": self.settings.tenant_db_host, "port": self.settings.tenant_db_port, "dbname": ref,
                "user": role, "password": password}

    def create_database(self, ctx: StepContext) -> dict[str, Any]:
        ref = check_ref(ctx.ref)
        source = "existing"
        with self._admin() as conn:
            if not self._database_exists(conn, ref):
                spare = self._claim_spare(conn, ref) if self.spare_databases > 0 else None
                if spare is not None:
                    source = "spare"
                else:
                    source = "template0"
                    if not self._create_closed_database(conn, ref, ref, source):
                        source = "existing"
            self._open_to_tenant(conn, ref, ref)
        return {"db_name": ref, "source": source}

    def configure_database(self, ctx: StepContext) -> dict[str, Any]:
        ref = check_ref(ctx.ref)
        owner = sql.Identifier(owner_role(ref))
        with self._admin(ref) as conn:
            # Idempotent, and next to free when the database came with it (template, spare).
            conn.execute(STRUCTURE_SQL)
            conn.execute(sql.SQL(OWNERSHIP_SQL).format(owner=owner))
            conn.execute(API_SQL)
            conn.execute(REALTIME_SQL)
            conn.execute(sql.SQL(REALTIME_OWNERSHIP_SQL).format(owner=owner))
            self._install_apis(conn, ref)
        return {}

    @staticmethod
    def _install_apis(conn: psycopg.Connection, ref: str) -> None:
        """Supabase's auth and storage schemas, each owned by its API's login."""
        auth_admin = sql.Identifier(logins.login_role("auth", ref))
        storage_admin = sql.Identifier(logins.login_role("storage", ref))
        conn.execute(sql.SQL(GRANTS_SQL).format(auth_admin=auth_admin, storage_admin=storage_admin))
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(auth_admin))
            conn.execute(AUTH_SQL)
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(storage_admin))
            conn.execute(STORAGE_SQL)

    def create_bucket(self, ctx: StepContext) -> dict[str, Any]:
        bucket = bucket_name(check_ref(ctx.ref))
        self.store.ensure_bucket(bucket)
        return {"bucket": bucket}

    def check_health(self, ctx: StepContext) -> dict[str, Any]:
        """Log in as the tenant, with the user's password, as a client would."""
        ref = check_ref(ctx.ref)
        db_pass = ctx.credentials()["db_pass"]
        host, port = self.settings.tenant_db_host, self.settings.tenant_db_port
        try:
            with psycopg.connect(host=host, port=port, dbname=ref, user=owner_role(ref), password=db_pass,
                                 connect_timeout=5, application_name="provisioner:check", autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_namespace WHERE nspname IN ('auth', 'storage', 'extensions')"
                ).fetchone()
        except psycopg.OperationalError as exc:
            raise StepError(f"the tenant login could not connect to {host}:{port} ({_connect_reason(exc)})") from None
        if not row or row[0] != 3:
            raise StepError("the database lacks the auth, storage or extensions schema")
        if not self.store.bucket_exists(bucket_name(ref)):
            raise StepError(f"bucket {bucket_name(ref)} does not exist")
        return {}

    # -- pause ------------------------------------------------------------------------------
    def block_connections(self, ctx: StepContext) -> dict[str, Any]:
        """No new tenant sessions, and none left: the dump then holds every committed row."""
        ref = check_ref(ctx.ref)
        with self._admin() as conn:
            if not self._database_exists(conn, ref):
                raise StepError(f"database {ref} does not exist; there is nothing to pause", permanent=True)
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC, {owner}, {auth}").format(
                db=sql.Identifier(ref), owner=sql.Identifier(owner_role(ref)),
                auth=sql.Identifier(authenticator_role(ref))))
            for role in (logins.login_role(s, ref) for s in logins.SERVICES):
                if self._role_exists(conn, role):
                    conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM {role}").format(
                        db=sql.Identifier(ref), role=sql.Identifier(role)))
            row = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = %s AND pid <> pg_backend_pid()", (ref,)).fetchone()
        return {"sessions_closed": int(row[0]) if row else 0}

    def backup_database(self, ctx: StepContext) -> dict[str, Any]:
        ref = check_ref(ctx.ref)
        bucket, key = bucket_name(ref), backup_key(ctx.operation_id)
        self.store.ensure_bucket(bucket)
        size = self.store.size(bucket, key)
        if size is None:  # not uploaded by an earlier attempt
            with self._admin() as conn:
                if not self._database_exists(conn, ref):
                    raise StepError(f"database {ref} does not exist and has no backup from this pause",
                                    permanent=True)
            tmp = self._tmp_file(f"{ref}.dump")
            try:
                # -Z 1: a third of the uncompressed size for twice the dump time of -Z 0,
                # and a third of -Z 6's time for the same size (measured on 180 MB).
                self._pg_tool(["pg_dump", "-Fc", "-Z", "1", "-f", str(tmp), "-d", ref], "pg_dump")
                size = self.store.put_file(bucket, key, tmp)
            finally:
                tmp.unlink(missing_ok=True)
        # Written after the dump is safely stored; restore reads it to find the latest backup.
        self.store.put_bytes(bucket, LATEST_BACKUP, key.encode())
        return {"backup_key": key, "backup_bytes": size}

    def drop_database(self, ctx: StepContext) -> dict[str, Any]:
        ref = check_ref(ctx.ref)
        with self._admin() as conn:
            dropped = self._drop_database(conn, ref)
            self._drop_database(conn, staging_database(ref))  # a restore that never finished
            self._drop_staging_role(conn, ref)
        return {"dropped": dropped}

    # -- restore ----------------------------------------------------------------------------
    def restore_database(self, ctx: StepContext) -> dict[str, Any]:
        """Restore the latest backup into a staging database, then rename it into place: a
        crash mid-restore leaves only the staging copy, which the next attempt replaces."""
        ref = check_ref(ctx.ref)
        bucket, staging = bucket_name(ref), staging_database(ref)
        with self._admin() as conn:
            if self._database_exists(conn, ref):
                return {"restored": False}
        raw = self.store.get_bytes(bucket, LATEST_BACKUP)
        if raw is None:
            raise StepError("this project has no backup to restore from", permanent=True)
        key = raw.decode()
        db_pass = ctx.credentials().get("db_pass")
        if not isinstance(db_pass, str) or not db_pass:
            raise StepError("the project has no database password to restore its backup with", permanent=True)
        tmp = self._tmp_file(f"{ref}.restore")
        listing = self._tmp_file(f"{ref}.toc")
        try:
            size = self.store.get_file(bucket, key, tmp)
            with self._admin() as conn:
                self._drop_database(conn, staging)
                self._create_closed_database(conn, staging, ref, "template0")
                self._open_to_tenant(conn, staging, ref)
                # pg_hba admits a tenant login only to the database named like its group
                # role (samerole): a group of that name lets the owner into the staging copy.
                if not self._role_exists(conn, staging):
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(staging)))
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(staging),
                                                              sql.Identifier(owner_role(ref))))
            with self._admin(staging) as conn:
                # What the platform owns comes from its own SQL, never from the dump.
                self._platform_structure(conn, ref)
            listing.write_text(self._restorable_toc(tmp, ref))
            self._restore_as_tenant(ref, staging, db_pass, tmp, listing)
            with self._admin() as conn:
                self._drop_staging_role(conn, ref)
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging),
                                                                            sql.Identifier(ref)))
        finally:
            tmp.unlink(missing_ok=True)
            listing.unlink(missing_ok=True)
        return {"restored": True, "backup_key": key, "backup_bytes": size}

    def _platform_structure(self, conn: psycopg.Connection, ref: str) -> None:
        """A new tenant database's platform-made parts (schemas, extensions, the publication,
        the API functions and event triggers, the APIs' grants), without the auth and storage
        tables: those come from the dump, with their rows."""
        conn.execute(STRUCTURE_SQL)
        conn.execute(sql.SQL(OWNERSHIP_SQL).format(owner=sql.Identifier(owner_role(ref))))
        conn.execute(API_SQL)
        conn.execute(sql.SQL(GRANTS_SQL).format(auth_admin=sql.Identifier(logins.login_role("auth", ref)),
                                                storage_admin=sql.Identifier(logins.login_role("storage", ref))))

    def _restorable_toc(self, dump: Path, ref: str) -> str:
        """The dump's table of contents without what `_platform_structure` made: entries
        owned by roles that are not the tenant's (the platform's functions and event
        triggers), and the schemas, extensions and publication it created. Everything kept is
        restored as the tenant's own login, so a doctored entry can do only what the tenant
        could do anyway."""
        done = subprocess.run(["pg_restore", "-l", str(dump)], env=self._pg_env(), capture_output=True,
                              timeout=600, check=False)
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            raise StepError(f"pg_restore could not read the backup: {err[0] if err else 'unknown error'}")
        tenant = {owner_role(ref), authenticator_role(ref), *(logins.login_role(s, ref) for s in logins.SERVICES),
                  "anon", "authenticated", "service_role", "pg_database_owner", ""}
        made = {"SCHEMA - auth", "SCHEMA - storage", "SCHEMA - extensions", "SCHEMA - graphql_public",
                "EXTENSION - pgcrypto", "EXTENSION - uuid-ossp", "COMMENT - EXTENSION pgcrypto",
                'COMMENT - EXTENSION "uuid-ossp"', "PUBLICATION - supabase_realtime"}
        kept = []
        for line in done.stdout.decode(errors="replace").splitlines():
            m = TOC_LINE.match(line)
            if m is None:
                continue  # comments and blank lines
            body, _, owner = m.group(1).rpartition(" ")
            if owner not in tenant or body in made:
                continue
            kept.append(line)
        return "\n".join(kept) + "\n"

    def _restore_as_tenant(self, ref: str, staging: str, db_pass: str, dump: Path, listing: Path) -> None:
        """pg_restore logged in as the tenant's owner, never as a superuser: nothing in the
        dump (ALTER SYSTEM, COPY ... TO PROGRAM, an untrusted extension) runs with more rights
        than the tenant has on its own database."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = db_pass
        argv = ["pg_restore", "-h", self.settings.tenant_db_host, "-p", str(self.settings.tenant_db_port),
                "-U", owner_role(ref), "--no-password", "-d", staging, "-L", str(listing),
                "-j", str(self.restore_jobs), "--exit-on-error", str(dump)]
        try:
            done = subprocess.run(argv, env=env, capture_output=True, timeout=3600, check=False)
        except FileNotFoundError:
            raise StepError("pg_restore: pg_restore is not installed on the provisioner's machine") from None
        except subprocess.TimeoutExpired:
            raise StepError("pg_restore: gave up after 3600 s") from None
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            detail = next((line for line in err if "error" in line.lower()), err[0] if err else "")
            raise StepError(f"pg_restore (as the project's role) failed: {detail.removeprefix('pg_restore: ')}"
                            .rstrip(": "))

    def _drop_staging_role(self, conn: psycopg.Connection, ref: str) -> None:
        if self._role_exists(conn, staging_database(ref)):
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(staging_database(ref))))

    def grant_access(self, ctx: StepContext) -> dict[str, Any]:
        ref = check_ref(ctx.ref)
        with self._admin() as conn:
            if not self._database_exists(conn, ref):
                raise StepError(f"database {ref} does not exist")
            self._lock_down(conn, ref, ref)
        return {}

    # -- delete -----------------------------------------------------------------------------
    def drop_roles(self, ctx: StepContext) -> dict[str, Any]:
        ref = check_ref(ctx.ref)
        dropped = []
        with self._admin(autocommit=False) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"supaplatform:tenant:{ref}",))
            services = [logins.login_role(s, ref) for s in logins.SERVICES]
            for role in (*services, staging_database(ref), owner_role(ref), authenticator_role(ref), group_role(ref)):
                if self._role_exists(conn, role):
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
                    dropped.append(role)
        return {"roles_dropped": dropped}

    def delete_bucket(self, ctx: StepContext) -> dict[str, Any]:
        return {"objects_deleted": self.store.delete_bucket(bucket_name(check_ref(ctx.ref)))}
