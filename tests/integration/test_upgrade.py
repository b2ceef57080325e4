"""`platformctl upgrade check/migrate`: a database one release behind is flagged (pending
migration), migrated, and then passes; consumers' contract versions are reported."""

from __future__ import annotations

import secrets
from typing import Callable

import psycopg

from services.shared.db import bootstrap, drop_database
from services.shared.migrations import MIGRATIONS, pending
from services.shared.settings import Settings
from tests.integration.test_platformctl import Result, ctl  # noqa: F401 -- the fixture


def test_upgrade_check_flags_a_pending_migration_and_migrate_applies_it(
        settings: Settings, ctl: Callable[..., Result]) -> None:  # noqa: F811
    # The running platform applied its migrations at start.
    r = ctl("upgrade", "check")
    assert f"({len(MIGRATIONS)} of {len(MIGRATIONS)} applied)" in r.out and "PENDING" not in r.out, r.out
    assert "billing.on_organization_created" in r.out and "organization_created" in r.out

    # A database as the previous release left it: schemas, no migrations.
    old = settings.with_overrides(db_name=f"{settings.db_name}_old_{secrets.token_hex(2)}")
    bootstrap(old)
    try:
        env = {"PLATFORM_DB_NAME": old.db_name}
        r = ctl("upgrade", "check", env=env)
        assert r.code == 1 and "PENDING 0001_history_snapshots" in r.out
        assert "not ready:" in r.out and "pending migration(s)" in r.out
        assert [m.id for m in pending(old)] == [m.id for m in MIGRATIONS]

        r = ctl("upgrade", "migrate", env=env)
        assert r.code == 0 and "applied 0001_history_snapshots" in r.out, r.err
        with psycopg.connect(old.db_conninfo) as conn:
            tables = {t for (t,) in conn.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_name LIKE '%%_snapshots'")}
        assert {"orgs.orgs_snapshots", "projects.projects_snapshots"} <= tables
        assert pending(old) == []
        r = ctl("upgrade", "check", env=env)
        assert f"({len(MIGRATIONS)} of {len(MIGRATIONS)} applied)" in r.out and "pending migration" not in r.out
        again = ctl("upgrade", "migrate", env=env)
        assert again.code == 0 and "no pending migrations" in again.out
    finally:
        drop_database(old)
