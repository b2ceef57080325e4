"""The local driver on the real PostgreSQL: tenants with Supabase's roles and schemas, logins
confined to their own database by SCRAM and pg_hba, pause -> restore keeping rows, delete
leaving nothing behind, every step safe to run twice, and readable errors.

Each test makes tenants with fresh random refs (roles are cluster-wide, so names never
collide between runs) and drops whatever it made, even when it fails.
"""

from __future__ import annotations

import random
import string
import time
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from services.provisioner.drivers.base import StepContext, StepError
from services.provisioner.drivers.local import (
    LATEST_BACKUP,
    SPARE_PREFIX,
    LocalDriver,
    authenticator_role,
    bucket_name,
    group_role,
    owner_role,
    staging_database,
)
from services.provisioner.storage import LocalObjectStore
from services.shared.db import connect
from services.shared.settings import Settings
from tests.conftest import free_port, make_test_settings

pytestmark = pytest.mark.timeout(90)

PASSWORD = "correct horse battery staple"


def new_ref() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=20))


def admin(settings: Settings, dbname: str = "postgres") -> psycopg.Connection:
    return connect(settings, autocommit=True, dbname=dbname)


def tenant_login(settings: Settings, ref: str, *, dbname: str | None = None, user: str | None = None,
                 password: str = PASSWORD) -> psycopg.Connection:
    return psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=dbname or ref,
                           user=user or owner_role(ref), password=password, connect_timeout=5, autocommit=True)


def cleanup(settings: Settings, ref: str) -> None:
    with admin(settings) as conn:
        for db in (ref, staging_database(ref)):
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        for role in (f"supabase_auth_admin.{ref}", f"supabase_storage_admin.{ref}", f"supabase_realtime_admin.{ref}",
                     staging_database(ref), owner_role(ref), authenticator_role(ref), group_role(ref)):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_test_settings("drv").with_overrides(state_dir=str(tmp_path_factory.mktemp("drvstate")))


@pytest.fixture(scope="module")
def hba_enforced(settings: Settings) -> None:
    with admin(settings) as conn:
        rows = conn.execute("SELECT database, auth_method FROM pg_hba_file_rules "
                            "WHERE '+supaplatform_tenants' = ANY(user_name)").fetchall()
    if ("{samerole}", "scram-sha-256") not in {("{" + ",".join(r[0]) + "}", r[1]) for r in rows}:
        pytest.fail("pg_hba.conf has no rules for tenant logins: run `bash scripts/ensure_infra.sh`")


class Tenants:
    def __init__(self, settings: Settings, root: Path):
        self.settings = settings
        self.store = LocalObjectStore(root / "storage")
        self.refs: list[str] = []
        self.plain = LocalDriver(settings, self.store, tmp_dir=root / "tmp")
        # As the provisioner makes it: spares, and connections to the maintenance database kept.
        self.with_spares = LocalDriver(settings, self.store, spare_databases=2, tmp_dir=root / "tmp", keep_idle=4)

    def driver(self, spares: bool = False) -> LocalDriver:
        return self.with_spares if spares else self.plain

    def ctx(self, ref: str, operation_id: str = "op", password: str = PASSWORD) -> StepContext:
        return StepContext(ref=ref, operation_id=operation_id,
                           credentials=lambda: {"db_pass": password, "jwt_secret": "unused"})

    def run(self, operation: str, ref: str, *, spares: bool = False, operation_id: str | None = None,
            password: str = PASSWORD) -> dict[str, float]:
        """Every step of the operation's plan, in order; returns each step's time in ms."""
        if ref not in self.refs:
            self.refs.append(ref)
        d = self.driver(spares)
        ctx = self.ctx(ref, operation_id or f"{operation}-{time.time_ns()}", password)
        times = {}
        for step in d.plan(operation):
            t0 = time.perf_counter()
            d.run_step(operation, step, ctx)
            times[step] = (time.perf_counter() - t0) * 1000
        return times

    def create(self, *, spares: bool = False, password: str = PASSWORD) -> str:
        ref = new_ref()
        if spares:
            self.with_spares.maintain()
        self.run("create", ref, spares=spares, password=password)
        return ref


@pytest.fixture
def tenants(settings: Settings, tmp_path: Path, hba_enforced: None) -> Iterator[Tenants]:
    t = Tenants(settings, tmp_path)
    yield t
    t.plain.close()
    t.with_spares.close()
    for ref in t.refs:
        cleanup(settings, ref)


def database_exists(settings: Settings, name: str) -> bool:
    with admin(settings) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def roles_of(settings: Settings, ref: str) -> set[str]:
    with admin(settings) as conn:
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                            ([owner_role(ref), authenticator_role(ref), group_role(ref)],)).fetchall()
    return {r[0] for r in rows}


# ---- create -------------------------------------------------------------------------------------

@pytest.mark.parametrize("spares", [False, True], ids=["template0", "spare"])
def test_create_builds_a_supabase_shaped_tenant(tenants: Tenants, settings: Settings, spares: bool) -> None:
    ref = tenants.create(spares=spares)
    with admin(settings) as conn:
        owner, acl, template_flag = conn.execute(
            "SELECT pg_get_userbyid(datdba), datacl::text[], datistemplate FROM pg_database WHERE datname = %s",
            (ref,)).fetchone()
        assert owner == owner_role(ref) and template_flag is False
        # CONNECT only for the tenant's logins (and the owner's implicit grant), not PUBLIC.
        assert not any(entry.startswith("=") for entry in acl), acl
        assert any(entry.startswith(f'"{authenticator_role(ref)}"=') and "c" in entry.split("=")[1] for entry in acl)
        roles = dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)",
                                  (["anon", "authenticated", "service_role", "supaplatform_tenants"],)).fetchall())
        assert roles == {"anon": False, "authenticated": False, "service_role": False, "supaplatform_tenants": False}
        auth = conn.execute("SELECT rolcanlogin, rolinherit, rolconnlimit FROM pg_roles WHERE rolname = %s",
                            (authenticator_role(ref),)).fetchone()
        assert auth == (True, False, 20)
        members = {r[0] for r in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (authenticator_role(ref),))}
        assert members == {"anon", "authenticated", "service_role", "supaplatform_tenants", ref}
    with admin(settings, ref) as conn:
        schemas = dict(conn.execute("SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace "
                                    "WHERE nspname IN ('auth', 'storage', 'extensions', 'public')").fetchall())
        assert schemas == {"auth": owner_role(ref), "storage": owner_role(ref), "extensions": owner_role(ref),
                           "public": "pg_database_owner"}
        assert conn.execute("SELECT pg_get_userbyid(pubowner) FROM pg_publication "
                            "WHERE pubname = 'supabase_realtime'").fetchone() == (owner_role(ref),)
        exts = {r[0]: r[1] for r in conn.execute(
            "SELECT extname, extnamespace::regnamespace::text FROM pg_extension WHERE extname <> 'plpgsql'")}
        assert exts == {"uuid-ossp": "extensions", "pgcrypto": "extensions"}
    # The user's db_pass opens the database; a table they create is usable by the API roles.
    with tenant_login(settings, ref) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (owner_role(ref), ref)
        conn.execute("CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text)")
        conn.execute("SET ROLE authenticated")
        conn.execute("INSERT INTO notes (body) VALUES ('as authenticated')")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT extensions.uuid_generate_v4() IS NOT NULL").fetchone() == (True,)
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public, extensions',)
    assert tenants.store.bucket_exists(bucket_name(ref))


def ready_spares(settings: Settings) -> list[str]:
    with admin(settings) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) "
                                           "AND NOT datallowconn", (SPARE_PREFIX,))]


def test_a_create_renames_a_ready_spare_database_and_upkeep_refills_them(tenants: Tenants, settings: Settings) -> None:
    d = tenants.with_spares
    # Spares are cluster-wide: another provisioner on this cluster may be building them now.
    deadline = time.monotonic() + 30
    while len(ready_spares(settings)) < 2:
        d.maintain()
        assert time.monotonic() < deadline, "no spare databases got built"
        time.sleep(0.1)
    for _ in range(3):  # another provisioner may take the spare we saw: try again
        ref = new_ref()
        tenants.refs.append(ref)
        ctx = tenants.ctx(ref)
        for step in d.plan("create"):
            result = d.run_step("create", step, ctx)
            if step == "create_database":
                source = result["source"]
        if source == "spare":
            break
    assert source == "spare"
    with admin(settings) as conn:
        owner, acl, open_ = conn.execute("SELECT pg_get_userbyid(datdba), datacl::text[], datallowconn "
                                         "FROM pg_database WHERE datname = %s", (ref,)).fetchone()
    assert owner == owner_role(ref) and open_ and not any(e.startswith("=") for e in acl)
    with tenant_login(settings, ref) as conn:
        assert conn.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'auth'"
                            ).fetchone() == (owner_role(ref),)
        conn.execute("CREATE TABLE t (v int)")
    # A spare a builder left half-built (still open for connections) is dropped, not handed out.
    half = SPARE_PREFIX + "deadbeef"
    with admin(settings) as conn:
        conn.execute(f'CREATE DATABASE "{half}"')
    try:
        deadline = time.monotonic() + 30
        while database_exists(settings, half) or len(ready_spares(settings)) < 2:
            d.maintain()
            assert time.monotonic() < deadline, "upkeep did not drop the half-built spare and refill"
            time.sleep(0.1)
    finally:
        with admin(settings) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{half}" WITH (FORCE)')


def test_every_create_step_is_safe_to_run_again(tenants: Tenants, settings: Settings) -> None:
    ref = tenants.create()
    with tenant_login(settings, ref) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    # A resumed saga re-runs whatever step it was in: each one finds its work done.
    for step in tenants.driver().plan("create"):
        tenants.driver().run_step("create", step, tenants.ctx(ref))
    tenants.run("create", ref)
    with tenant_login(settings, ref) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [(42,)]
    with admin(settings) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (ref + "%",)).fetchone() == (1,)
    assert roles_of(settings, ref) == {owner_role(ref), authenticator_role(ref), group_role(ref)}


def test_concurrent_creates_do_not_trip_over_each_other(tenants: Tenants, settings: Settings) -> None:
    # Sagas of different projects run at once and share the cluster-wide roles.
    import threading

    refs = [new_ref() for _ in range(6)]
    errors: list[BaseException] = []

    def create(ref: str) -> None:
        d, ctx = tenants.driver(), tenants.ctx(ref)
        tenants.refs.append(ref)
        try:
            for step in d.plan("create"):
                for attempt in range(5):
                    try:
                        d.run_step("create", step, ctx)
                        break
                    except StepError as exc:
                        # A full cluster (shared by other suites) is the saga's to retry; a
                        # race between these creates would be an error of its own: raise it.
                        if "connection slots" not in str(exc) and "too many clients" not in str(exc) or attempt == 4:
                            raise
                        time.sleep(0.2 * 2 ** attempt)
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(r,)) for r in refs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for ref in refs:
        with tenant_login(settings, ref) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (ref,)


# ---- isolation ----------------------------------------------------------------------------------

def refused(**kw: Any) -> str:
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(connect_timeout=5, **kw).close()
    return str(e.value)


def test_logins_need_their_password_and_reach_only_their_own_database(tenants: Tenants, settings: Settings) -> None:
    a, b = tenants.create(), tenants.create(password="another tenant's password")
    where = {"host": settings.tenant_db_host, "port": settings.tenant_db_port}
    # A wrong password is refused: SCRAM applies to tenant logins though the platform user has trust.
    assert "password authentication failed" in refused(**where, dbname=a, user=owner_role(a), password="wrong")
    assert "no password supplied" in refused(**where, dbname=a, user=owner_role(a), password="")
    # Tenant A's login, with its right password, cannot reach tenant B's database...
    assert "pg_hba.conf rejects connection" in refused(**where, dbname=b, user=owner_role(a), password=PASSWORD)
    # ...nor the platform's databases (they grant CONNECT to PUBLIC).
    for db in ("postgres", settings.db_name, "template1"):
        assert "pg_hba.conf rejects connection" in refused(**where, dbname=db, user=owner_role(a), password=PASSWORD)
    # B's own password works for B only; B's authenticator is confined the same way.
    with tenant_login(settings, b, password="another tenant's password") as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (b,)
    assert "pg_hba.conf rejects connection" in refused(**where, dbname=a, user=authenticator_role(b), password="x")
    # Even with pg_hba out of the way, the database ACL refuses other tenants' roles.
    with admin(settings, a) as conn:
        assert conn.execute("SELECT has_database_privilege(%s, %s, 'CONNECT'), "
                            "has_database_privilege(%s, %s, 'CONNECT')",
                            (owner_role(b), a, authenticator_role(b), a)).fetchone() == (False, False)
        assert conn.execute("SELECT has_database_privilege('anon', %s, 'CONNECT')", (a,)).fetchone() == (False,)


def test_a_non_ascii_password_works_as_postgresql_prepares_it(tenants: Tenants, settings: Settings) -> None:
    password = "Ｐässwörd\u00a0ﬁ-ünïcode"  # fullwidth, non-ASCII space, ligature: SASLprep maps them
    ref = tenants.create(password=password)
    with tenant_login(settings, ref, password=password) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# ---- pause, restore -----------------------------------------------------------------------------

@pytest.mark.parametrize("spares", [False, True], ids=["template0", "spare"])
def test_pause_then_restore_keeps_every_row(tenants: Tenants, settings: Settings, spares: bool) -> None:
    ref = tenants.create(spares=spares)
    driver = tenants.driver(spares)
    with tenant_login(settings, ref) as conn:
        conn.execute("CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes (body) SELECT 'row ' || g FROM generate_series(1, 1000) g")
        conn.execute("CREATE POLICY p ON notes FOR SELECT TO anon USING (true)")
        conn.execute("ALTER TABLE notes ENABLE ROW LEVEL SECURITY")
        conn.execute("ALTER PUBLICATION supabase_realtime ADD TABLE notes")
    idle = tenant_login(settings, ref)  # a session left open: the pause must close it

    tenants.run("pause", ref, spares=spares, operation_id="pause-1")
    assert not database_exists(settings, ref)
    assert roles_of(settings, ref) == {owner_role(ref), authenticator_role(ref), group_role(ref)}  # kept
    keys = tenants.store.list_keys(bucket_name(ref))
    assert keys == ["_platform/backups/LATEST", "_platform/backups/pause-1.dump"]
    assert tenants.store.get_bytes(bucket_name(ref), LATEST_BACKUP) == b"_platform/backups/pause-1.dump"
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    idle.close()
    health = driver.check_tenant(ref)
    assert health["db"]["healthy"] is False and "does not exist" in health["db"]["error"]
    assert health["storage"]["healthy"] is True

    tenants.run("restore", ref, spares=spares)
    assert not database_exists(settings, staging_database(ref))
    with tenant_login(settings, ref) as conn:
        assert conn.execute("SELECT count(*), max(body) FROM notes").fetchone() == (1000, "row 999")
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE tablename = 'notes'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_publication_tables "
                            "WHERE pubname = 'supabase_realtime' AND tablename = 'notes'").fetchone() == (1,)
        conn.execute("INSERT INTO notes (body) VALUES ('after restore')")  # identity continues
        assert conn.execute("SELECT max(id) FROM notes").fetchone() == (1001,)
    with admin(settings) as conn:
        acl = conn.execute("SELECT datacl::text[] FROM pg_database WHERE datname = %s", (ref,)).fetchone()[0]
    assert not any(entry.startswith("=") for entry in acl)
    assert driver.check_tenant(ref) == {"db": {"healthy": True, "status": "ACTIVE_HEALTHY"},
                                        "storage": {"healthy": True, "status": "ACTIVE_HEALTHY"}}


def test_pause_and_restore_steps_are_safe_to_run_again(tenants: Tenants, settings: Settings) -> None:
    ref = tenants.create()
    with tenant_login(settings, ref) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
    d, ctx = tenants.driver(), tenants.ctx(ref, "pause-twice")
    for step in d.plan("pause"):
        d.run_step("pause", step, ctx)
        if step != "block_connections":  # once the database is gone there is nothing to block
            d.run_step("pause", step, ctx)
    assert tenants.store.list_keys(bucket_name(ref), "_platform/backups/pause-") == [
        "_platform/backups/pause-twice.dump"]
    ctx = tenants.ctx(ref, "restore-twice")
    # A restore interrupted after creating its staging database: the next attempt starts over.
    with admin(settings) as conn:
        conn.execute(f'CREATE DATABASE "{staging_database(ref)}"')
    for step in d.plan("restore"):
        d.run_step("restore", step, ctx)
        d.run_step("restore", step, ctx)
    with tenant_login(settings, ref) as conn:
        assert conn.execute("SELECT sum(v) FROM t").fetchone() == (3,)


def test_a_doctored_backup_cannot_do_what_only_a_superuser_may(tenants: Tenants, settings: Settings,
                                                                tmp_path: Path) -> None:
    """The backup lives in the tenant's bucket; whatever it holds, pg_restore runs as the
    tenant's own login, so a superuser-only statement in it (an untrusted extension that reads
    the server's files) fails the restore instead of running."""
    import subprocess

    ref = tenants.create()
    tenants.run("pause", ref, operation_id="pause-1")
    evil = "evil_" + new_ref()
    with admin(settings) as conn:
        conn.execute(f'CREATE DATABASE "{evil}" TEMPLATE template0')
    try:
        with admin(settings, evil) as conn:
            conn.execute("CREATE EXTENSION file_fdw")
            conn.execute("CREATE SERVER leak FOREIGN DATA WRAPPER file_fdw")
            conn.execute("CREATE FOREIGN TABLE public.passwd (line text) SERVER leak OPTIONS (filename '/etc/passwd')")
            conn.execute(f'ALTER FOREIGN TABLE public.passwd OWNER TO "{owner_role(ref)}"')
        dump = tmp_path / "evil.dump"
        env = {"PATH": "/usr/bin:/bin", **({"PGPASSWORD": settings.db_password} if settings.db_password else {})}
        done = subprocess.run(["pg_dump", "-Fc", "-h", settings.db_host, "-p", str(settings.db_port), "-U",
                               settings.db_user, "-f", str(dump), evil], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        with admin(settings) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{evil}" WITH (FORCE)')
    tenants.store.put_file(bucket_name(ref), "_platform/backups/pause-1.dump", dump)

    d, ctx = tenants.driver(), tenants.ctx(ref, "restore-evil")
    with pytest.raises(StepError) as failed:
        for step in d.plan("restore"):
            d.run_step("restore", step, ctx)
    assert "as the project's role" in str(failed.value) and "file_fdw" in str(failed.value), failed.value
    assert not database_exists(settings, ref)
    with admin(settings, staging_database(ref)) as conn:  # the half-restored copy
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'file_fdw'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_foreign_server").fetchone() == (0,)


def test_a_failed_pause_lets_the_tenant_back_in(tenants: Tenants, settings: Settings) -> None:
    ref = tenants.create()
    d, ctx = tenants.driver(), tenants.ctx(ref)
    d.run_step("pause", "block_connections", ctx)
    assert "permission denied" in refused(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                                          user=owner_role(ref), password=PASSWORD)
    assert d.compensate("pause", ctx, ["block_connections"]) == "connections to the database re-enabled"
    with tenant_login(settings, ref) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_restore_without_a_backup_and_pause_without_a_database_fail_for_good(tenants: Tenants) -> None:
    ref = new_ref()
    tenants.refs.append(ref)
    d = tenants.driver()
    tenants.store.ensure_bucket(bucket_name(ref))
    with pytest.raises(StepError) as e:
        d.run_step("restore", "restore_database", tenants.ctx(ref))
    assert e.value.permanent and str(e.value) == "this project has no backup to restore from"
    with pytest.raises(StepError) as e:
        d.run_step("pause", "block_connections", tenants.ctx(ref))
    assert e.value.permanent and "does not exist" in str(e.value)


# ---- delete -------------------------------------------------------------------------------------

def test_delete_removes_database_roles_and_bucket_and_can_run_again(tenants: Tenants, settings: Settings) -> None:
    live, paused = tenants.create(), tenants.create()
    tenants.run("pause", paused)
    for ref in (live, paused):
        tenants.run("delete", ref)
        assert not database_exists(settings, ref)
        assert roles_of(settings, ref) == set()
        assert not tenants.store.bucket_exists(bucket_name(ref))
        tenants.run("delete", ref)  # a resumed delete finds everything gone already
    with admin(settings) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'anon'").fetchone() == (1,)  # shared: kept


# ---- errors -------------------------------------------------------------------------------------

def test_connections_to_the_maintenance_database_are_kept_only_after_a_clean_block(settings: Settings,
                                                                                  tmp_path: Path) -> None:
    d = LocalDriver(settings, LocalObjectStore(tmp_path / "storage"), keep_idle=2)
    try:
        with d._admin() as conn:
            pid = conn.info.backend_pid
        with d._admin() as conn:
            assert conn.info.backend_pid == pid  # the same backend: no new connection
        with d._admin(autocommit=False) as conn:  # one transaction on it, committed at the end
            assert conn.info.backend_pid == pid
            conn.execute("SELECT pg_advisory_xact_lock(1)")
        with admin(settings) as other:  # the transaction ended: its lock is free
            assert other.execute("SELECT pg_try_advisory_xact_lock(1)").fetchone() == (True,)
        with pytest.raises(StepError):
            with d._admin() as conn:
                conn.execute("SELECT 1/0")
        assert d._idle == []  # a block that failed does not give its connection back
        with d._admin(), d._admin(), d._admin():
            pass
        assert len(d._idle) == 2  # at most keep_idle are kept
    finally:
        d.close()
    assert d._idle == []


def test_an_unreachable_postgresql_is_a_readable_step_error(settings: Settings, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    down = settings.with_overrides(db_port=port, tenant_db_port=port)
    d = LocalDriver(down, LocalObjectStore(tmp_path / "storage"))
    with pytest.raises(StepError) as e:
        d.run_step("create", "create_database",
                   StepContext(new_ref(), "op", lambda: {"db_pass": "x", "jwt_secret": "y"}))
    assert str(e.value) == f"could not connect to PostgreSQL at 127.0.0.1:{port} (connection refused)"
    assert not e.value.permanent
    health = d.check_tenant(new_ref())
    assert health["db"] == {"healthy": False, "status": "UNHEALTHY", "error": "connection refused"}


def test_bad_refs_are_refused_before_touching_anything(tenants: Tenants) -> None:
    for bad in ('x"; DROP DATABASE postgres; --', "UPPERCASEREFERENCEAB", "short"):
        with pytest.raises(StepError) as e:
            tenants.driver().run_step("create", "create_roles", tenants.ctx(bad))
        assert e.value.permanent


# ---- speed --------------------------------------------------------------------------------------

def test_create_pause_restore_delete_are_fast(tenants: Tenants, settings: Settings,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    tenants.create()  # warm: the cluster roles exist
    def report(op: str, t: dict[str, float]) -> str:
        return f"{op} {sum(t.values()):.0f} ms " + " ".join(f"{k}={v:.0f}" for k, v in t.items())

    lines = []
    for label, driver in (("template0", tenants.plain), ("spare", tenants.with_spares)):
        driver.maintain()
        ref = new_ref()
        tenants.refs.append(ref)
        ctx = tenants.ctx(ref, "timed")
        timings: dict[str, dict[str, float]] = {}
        for op in ("create", "pause", "restore", "delete"):
            timings[op] = {}
            for step in driver.plan(op):
                t0 = time.perf_counter()
                driver.run_step(op, step, ctx)
                timings[op][step] = (time.perf_counter() - t0) * 1000
        lines += [f"local driver ({label}): " + report(op, t) for op, t in timings.items()]
        # Wall-clock speed is bench/provision.py's to measure (figures in docs/provisioning.md):
        # here the bound only catches an operation gone pathological (a lock wait, a retry
        # loop). A shared 2-core machine under load (make test-stress, other checkouts'
        # suites on the same PostgreSQL) has taken over 5 s for a step that takes 200 ms.
        slow = {op: round(sum(t.values())) for op, t in timings.items() if sum(t.values()) >= 30_000}
        assert not slow, f"{label}: operations over 30 s (ms): {slow}; " + "; ".join(lines)
    with capsys.disabled():
        print("\n  " + "\n  ".join(lines))
