"""On the kubernetes driver a project's realtime settings and shutdowns reach Supabase
Realtime's tenants API (services/realtime/adapters.py), tested against the fake Realtime over
real HTTP (tests/unit/kubernetes/fakes.py): the tenant the driver registered is updated with
the changed fields (bodies checked against the tenant schema), a shutdown closes its sockets,
a redelivered message is harmless, a tenant not registered is not an error, and a failing
API raises (the message is retried by the realtime service's reliable handler)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from services.realtime.adapters import NoRuntime, RealtimeRuntimeError, SupabaseRealtimeTenants
from services.realtime.bootstrap import build
from services.realtime.outbox import RELAY
from services.shared.relay import message_for
from tests.conftest import make_test_settings
from tests.unit.test_realtime_config_app import FakeBilling, FakeOrgs, FakeProjects

from .fakes import Cluster
from .test_kubernetes_driver import REF, make_driver, run_plan

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.bootstrap_shared()
    yield c
    c.close()


def world(cluster: Cluster) -> tuple[Any, tuple[Any, ...], str]:
    settings = make_test_settings("k8s").with_overrides(**cluster.settings_overrides())
    app = build(settings, in_memory=True)
    projects = FakeProjects()
    owner = str(uuid.uuid4())
    projects.members[(owner, REF)] = "owner"
    return app, (projects, FakeOrgs(projects), FakeBilling()), owner


def envelopes(app: Any) -> list[dict[str, Any]]:
    out = []
    for n in app.recorder.select_notifications(1, 100):
        m = message_for(RELAY, app.mapper.to_domain_event(n), n.id)
        if m is not None:
            out.append(m[1])
    return out


def test_changes_and_shutdowns_reach_the_registered_tenant(cluster: Cluster, tmp_path: Path) -> None:
    run_plan(make_driver(cluster, tmp_path), "create")  # the driver registers the tenant (200 users)
    assert cluster.realtime.tenants[REF]["max_concurrent_users"] == 200
    app, ports, owner = world(cluster)
    assert isinstance(app.runtime, SupabaseRealtimeTenants)
    app.update_realtime_config(owner, REF, {"max_concurrent_users": 42, "private_only": True, "connection_pool": 3},
                               *ports)
    app.shutdown_realtime(owner, REF, *ports)
    for env in envelopes(app):
        assert app.apply_to_runtime(env) is True
    tenant = cluster.realtime.tenants[REF]
    assert tenant["max_concurrent_users"] == 42 and tenant["private_only"] is True
    assert "connection_pool" not in tenant  # no such tenant field in Realtime
    assert tenant["jwt_secret"]  # the registration's other fields stay
    assert cluster.realtime.writes == {f"POST {REF}": 1, f"PUT {REF}": 1, f"shutdown {REF}": 1}
    assert cluster.realtime.errors == []
    # A redelivery sets the same values again: nothing new.
    for env in envelopes(app):
        app.apply_to_runtime(env)
    assert cluster.realtime.tenants[REF]["max_concurrent_users"] == 42


def test_unregistered_tenant_and_failures(cluster: Cluster) -> None:
    app, ports, owner = world(cluster)
    app.update_realtime_config(owner, REF, {"max_events_per_second": 7}, *ports)
    env = envelopes(app)[0]
    assert app.apply_to_runtime(env) is False  # not registered (yet): nothing to update
    cluster.realtime.tenants[REF] = {"name": REF, "external_id": REF, "jwt_secret": "s"}
    cluster.realtime.fail("PUT", f"/api/tenants/{REF}$", 500)
    with pytest.raises(RealtimeRuntimeError, match="answered 500"):
        app.apply_to_runtime(env)  # the handler's retry then succeeds
    assert app.apply_to_runtime(env) is True and cluster.realtime.tenants[REF]["max_events_per_second"] == 7
    # A bearer token signed with another secret is refused by Realtime.
    wrong = SupabaseRealtimeTenants(cluster.realtime.url, "not-the-secret")
    with pytest.raises(RealtimeRuntimeError, match="401"):
        wrong.update_tenant(REF, {"suspend": True})


def test_the_local_driver_has_no_runtime_to_tell() -> None:
    app = build(make_test_settings("local"), in_memory=True)
    assert isinstance(app.runtime, NoRuntime)
