"""The platform's own credentials (services/shared/credentials.py) against the real
PostgreSQL and RabbitMQ: created once with admin access, stored 0600, idempotent, safe when
two starts race, re-created when they stop working, and required by pg_hba (SCRAM).

Each test works on a role and user of its own (never the machine's `supaplatform`, which
other checkouts use right now) and a credentials file in a temporary folder; the role and
user are removed afterwards with the platform's own login."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import requests
from psycopg import sql

from services.shared.credentials import ensure, stored_passwords
from services.shared.settings import Settings, load_settings
from tests.support import stop_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Settings]:
    base = load_settings({})  # the platform's own login: used here only to clean up
    name = f"sp_cred_test_{secrets.token_hex(4)}"
    s = base.with_overrides(db_user=name, amqp_user=name, credentials_file=str(tmp_path / "state" / "credentials.json"))
    yield s
    with psycopg.connect(base.conninfo_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    requests.delete(f"{base.rabbitmq_management_url}/api/users/{name}", auth=(base.amqp_user, base.amqp_password),
                    timeout=10)


def logs_in(s: Settings, password: str) -> bool:
    try:
        with psycopg.connect(host=s.db_host, port=s.db_port, user=s.db_user, password=password, dbname="postgres",
                             connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def test_created_once_stored_0600_and_reused(scratch: Settings) -> None:
    # Two starts at once (two `make test` in two checkouts): two processes, one creates,
    # both get the same.
    code = ("import json, sys\n"
            "from services.shared.credentials import ensure\n"
            "from services.shared.settings import load_settings\n"
            "s = ensure(load_settings({}).with_overrides(db_user=sys.argv[1], amqp_user=sys.argv[1], "
            "credentials_file=sys.argv[2]), environ={})\n"
            "print(json.dumps([s.db_password, s.amqp_password]))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, scratch.db_user, scratch.credentials_file], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
            outs.append(json.loads(out))
    finally:
        for p in procs:
            stop_process(p)
    assert outs[0] == outs[1] and len(outs[0][0]) >= 40 and outs[0][0] != outs[0][1]
    first = ensure(scratch, environ={})
    assert [first.db_password, first.amqp_password] == outs[0]
    path = Path(scratch.credentials_file)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data["postgres"][f"{scratch.db_host}:{scratch.db_port}"] == {"user": scratch.db_user,
                                                                         "password": first.db_password}
    # load_settings reads them when no password is given in the environment.
    assert stored_passwords(scratch) == {"db_password": first.db_password, "amqp_password": first.amqp_password}
    # Again: nothing changes.
    before = path.read_bytes()
    assert ensure(scratch, environ={}).db_password == first.db_password
    assert path.read_bytes() == before
    assert logs_in(scratch, first.db_password)
    # The platform's role must prove its password (pg_hba, scripts/ensure_infra.sh:
    # scram-sha-256 for it, although loopback trusts everyone else on this machine).
    platform = load_settings({})
    assert logs_in(platform, platform.db_password)
    assert not logs_in(platform, "not-the-password")
    r = requests.get(f"{scratch.rabbitmq_management_url}/api/whoami", auth=(scratch.amqp_user, first.amqp_password),
                     timeout=10)
    assert r.status_code == 200 and r.json()["name"] == scratch.amqp_user
    assert requests.get(f"{scratch.rabbitmq_management_url}/api/whoami", auth=(scratch.amqp_user, "nope"),
                        timeout=10).status_code == 401


def test_recreated_when_the_stored_password_stops_working(scratch: Settings) -> None:
    created = ensure(scratch, environ={})
    base = load_settings({})
    with psycopg.connect(base.conninfo_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(scratch.db_user)))
    assert not logs_in(scratch, created.db_password)
    again = ensure(scratch, environ={})
    assert again.db_password == created.db_password  # the stored one, set again
    assert logs_in(scratch, again.db_password)


def test_a_password_given_by_the_operator_is_used_as_is(scratch: Settings) -> None:
    given = scratch.with_overrides(db_password="operator-managed", amqp_password="operator-managed-too")
    env = {"PLATFORM_DB_PASSWORD": "operator-managed", "PLATFORM_AMQP_PASSWORD": "operator-managed-too"}
    assert ensure(given, environ=env) == given
    assert not Path(scratch.credentials_file).exists()
