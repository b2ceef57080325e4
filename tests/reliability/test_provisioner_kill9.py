"""kill -9 the provisioner in the middle of a create saga, restart it: the project still ends
ACTIVE_HEALTHY, with every step done once, one outcome published, and nothing orphaned.

The platform runs as real processes (services.shared.runner.Platform) on a throwaway
database and vhost, with the services a create needs. PLATFORM_PROVISIONER_STEP_DELAY_MS
slows every saga step down so the kill lands mid-saga, between a step's start and its end.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from typing import Any, Iterator

import psycopg
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.provisioner.application import ProvisionerApplication
from services.provisioner.domain import Saga
from services.provisioner.drivers.local import (
    authenticator_role,
    bucket_name,
    group_role,
    owner_role,
    staging_database,
)
from services.provisioner.outbox import to_message
from services.provisioner.logins import SERVICES as API_LOGINS, login_role
from services.provisioner.storage import state_path
from services.shared.db import connect
from services.shared.eventstore import open_application
from services.shared.runner import Platform
from services.shared.settings import Settings
from tests.conftest import ARTIFACTS

from .conftest import fresh_settings, wait_for

SERVICES = ["orgs", "billing", "projects", "provisioner", "relay"]
STEP_DELAY_MS = 600
DB_PASS = "Kill-9 tenant pass"


@pytest.fixture
def platform() -> Iterator[Platform]:
    with fresh_settings("p9", provisioner_step_delay_ms=STEP_DELAY_MS, provisioner_retry_base_ms=100) as s:
        p = Platform(s, log_dir=ARTIFACTS / "logs" / s.db_name, only=SERVICES)
        # Relay only the producers a create involves: each relayed store holds its own
        # connections, and the PostgreSQL this suite runs on is shared.
        relay = next(spec for spec in p.specs if spec.name == "relay")
        relay.argv = [*relay.argv, "orgs", "projects", "provisioner"]
        try:
            p.start()
            yield p
        finally:
            p.stop()


def project_detail(rpc: Any, user_id: str, ref: str) -> dict[str, Any]:
    return rpc.projects.get_project(user_id, ref)  # type: ignore[no-any-return]


def saga_rows(settings: Settings, ref: str) -> list[tuple[uuid.UUID, str, str]]:
    with connect(settings) as db:
        return [(r[0], r[1], r[2]) for r in db.execute(
            "SELECT saga_id, operation, status FROM provisioner.sagas WHERE ref = %s", (ref,)).fetchall()]


def tenant_footprint(settings: Settings, ref: str) -> dict[str, Any]:
    with connect(settings, autocommit=True, dbname="postgres") as db:
        dbs = [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{ref}%",))]
        roles = sorted(r[0] for r in db.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                                (f"%{ref}%",)))
    return {"databases": dbs, "roles": roles}


def cleanup(settings: Settings, ref: str) -> None:
    with connect(settings, autocommit=True, dbname="postgres") as db:
        for name in (ref, staging_database(ref)):
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in (owner_role(ref), authenticator_role(ref), group_role(ref)):
            db.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_mid_create_saga_then_restart_ends_active_healthy_with_nothing_twice(platform: Platform) -> None:
    settings = platform.settings
    ref = None
    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri}, timeout=30) as rpc:
        try:
            # An org and a project: projects publishes project_requested, the provisioner starts.
            email = f"k9-{uuid.uuid4().hex[:8]}@example.com"
            user = rpc.orgs.register_user(email, "correct horse battery")
            slug = rpc.orgs.create_organization(user["id"], "Kill Nine")["slug"]
            wait_for("billing to know the org",
                     lambda: _entitled(rpc, slug), timeout=30)
            project = rpc.projects.create_project(user["id"], {"name": "K9", "organization_slug": slug,
                                                              "db_pass": DB_PASS, "region": "eu-west-1"})
            ref = project["ref"]

            # Kill when the saga has finished two steps and started the third (create_database).
            wait_for("the saga to reach create_database",
                     lambda: (project_detail(rpc, user["id"], ref).get("progress") or {}).get("step_index", 0) >= 3,
                     timeout=60, interval=0.02)
            victim = platform.procs["provisioner"]
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            at_kill = project_detail(rpc, user["id"], ref)
            assert at_kill["status"] == "COMING_UP", at_kill

            # Restart; the unacked request comes back (and the reconciler looks too).
            spec = next(s for s in platform.specs if s.name == "provisioner")
            platform.start_process(spec)
            done = wait_for("the project to settle",
                            lambda: (d := project_detail(rpc, user["id"], ref))["status"] != "COMING_UP" and d,
                            timeout=90, interval=0.1)
            assert done["status"] == "ACTIVE_HEALTHY", done

            # One saga for this create, finished; each step completed once; resumed once; one outcome.
            rows = saga_rows(settings, ref)
            assert [(op, status) for _, op, status in rows] == [("create", "succeeded")]
            app = open_application(ProvisionerApplication, settings)
            try:
                events = list(app.events.get(rows[0][0]))
            finally:
                app.close()
            kinds = Counter(type(e).__name__ for e in events)
            completed = Counter(e.step for e in events if isinstance(e, Saga.StepCompleted))
            assert kinds["Requested"] == 1 and kinds["Succeeded"] == 1 and kinds["Failed"] == 0
            assert kinds["Resumed"] == 1, kinds
            assert set(completed.values()) == {1} and len(completed) == 6, completed
            published = [m.event_type for e in events if (m := to_message(e)) is not None]
            assert published.count("project_provisioned") == 1
            assert published.count("provisioning_step_started") == 6

            # Nothing orphaned: one database, the tenant's roles (three, and the Auth and
            # Storage APIs' logins), its bucket, no temp files.
            assert tenant_footprint(settings, ref) == {
                "databases": [ref], "roles": sorted([owner_role(ref), authenticator_role(ref), group_role(ref),
                                                  *(login_role(svc, ref) for svc in API_LOGINS)])}
            assert (state_path(settings, "storage") / bucket_name(ref)).is_dir()
            tmp = state_path(settings, "tmp", "provisioner")
            assert not tmp.exists() or list(tmp.iterdir()) == []
            # And it works: the user's password opens the tenant database.
            with psycopg.connect(host=settings.tenant_db_host, port=settings.tenant_db_port, dbname=ref,
                                 user=owner_role(ref), password=DB_PASS, connect_timeout=5) as db:
                assert db.execute("SELECT current_user").fetchone() == (owner_role(ref),)
            health = rpc.provisioner.check_tenant(ref)
            assert health["db"]["healthy"] and health["storage"]["healthy"]
        finally:
            if ref is not None:
                cleanup(settings, ref)


def _entitled(rpc: Any, slug: str) -> bool:
    try:
        return bool(rpc.billing.get_entitlements(slug))
    except Exception:  # noqa: BLE001 -- not yet: billing has not consumed organization_created
        return False  # wait_for polls again
