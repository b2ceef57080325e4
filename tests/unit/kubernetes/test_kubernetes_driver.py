"""The kubernetes driver against a fake cluster over real HTTP (tests/unit/kubernetes/fakes.py),
with the real `kubernetes` client: call order, create-or-get after a crash at every step,
409/404 handling, every object valid (kubernetes-validate strict 1.30, CNPG schema subset,
unknown keys refused), the data-plane registrations' bodies, and a provisioning saga that
reaches ACTIVE_HEALTHY and whose pause/restore/delete leave the cluster as expected."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from services.provisioner.application import MemorySagaLocks, ProvisionerApplication, SagaRunner
from services.provisioner.bootstrap import build
from services.provisioner.domain import RetryPolicy
from services.provisioner.drivers import driver_class
from services.provisioner.drivers.base import StepContext, StepError
from services.provisioner.drivers.kubernetes import KubernetesDriver
from services.provisioner.drivers.kubernetes_api import KubeApi, KubeError
from services.provisioner.storage import LocalObjectStore
from services.projects import keys
from tests.conftest import make_test_settings

from .fakes import Cluster, validate_object

pytestmark = pytest.mark.timeout(120)

REF = "abcdefghijklmnopqrst"
JWT_SECRET = "tenant-jwt-secret-0123456789abcdefghij"
CREDS = {"db_pass": "tenant-db-pass-never-logged", "jwt_secret": JWT_SECRET,
         "anon_key": keys.api_key(JWT_SECRET, REF, "anon", 1700000000),
         "service_role_key": keys.api_key(JWT_SECRET, REF, "service_role", 1700000000)}


class Crash(BaseException):
    """Stands in for SIGKILL between a step's effect and the saga recording it."""


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.bootstrap_shared()
    yield c
    c.close()


def make_driver(cluster: Cluster, tmp_path: Path, **overrides: Any) -> KubernetesDriver:
    settings = make_test_settings("k8s").with_overrides(**(cluster.settings_overrides() | overrides))
    store = LocalObjectStore(tmp_path / "s3")
    return KubernetesDriver(settings, store, kube=KubeApi(settings.k8s_api_url), wait_timeout_s=5, poll_s=0.01)


def ctx(op: str = "op-1") -> StepContext:
    return StepContext(ref=REF, operation_id=op, credentials=lambda: dict(CREDS), org="acme")  # type: ignore[arg-type, return-value]


def run_plan(driver: KubernetesDriver, operation: str, start: int = 0) -> None:
    for step in driver.plan(operation)[start:]:
        driver.run_step(operation, step, ctx())


def tenant_state(c: Cluster, tmp_path: Path) -> dict[str, Any]:
    """Everything the driver can leave behind, comparable across runs."""
    objs = {}
    for key, obj in c.kube.snapshot().items():
        objs[key] = {k: v for k, v in obj.items() if k != "metadata"} | {
            "labels": obj["metadata"].get("labels"), "annotations": obj["metadata"].get("annotations")}
    s3 = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "s3").rglob("*") if p.is_file()) \
        if (tmp_path / "s3").exists() else []
    state = {"objects": objs, "registrations": c.registrations(), "kong": c.kong.kong,
             "supavisor": c.supavisor.tenants, "realtime": c.realtime.tenants, "storage": c.storage.tenants, "s3": s3}
    text = json.dumps(state, sort_keys=True)
    for server in c.servers():  # each fake cluster listens on its own ports
        text = text.replace(server.url, f"<{type(server).__name__}>")
    return json.loads(text)


def test_selected_by_the_setting() -> None:
    s = make_test_settings("k8s").with_overrides(provisioner_driver="kubernetes")
    assert driver_class(s) is KubernetesDriver


def test_create_makes_every_object_in_order_each_valid_and_labelled(cluster: Cluster, tmp_path: Path) -> None:
    driver = make_driver(cluster, tmp_path)
    run_plan(driver, "create")
    posts = [p for m, p in cluster.kube.requests if m == "POST"]
    kinds = [p.rsplit("/", 1)[-1] for p in posts][2:]  # after bootstrap_shared's namespace and cluster
    assert kinds == ["namespaces", "resourcequotas", "limitranges", "networkpolicies", "secrets", "secrets",
                     "jobs", "databases", "jobs", "deployments", "services", "deployments", "services",
                     "deployments", "services"]
    assert cluster.kube.invalid == []
    ns = f"tenant-{REF}"
    for (kind, namespace, name), obj in cluster.kube.objects.items():
        validate_object({k: v for k, v in obj.items() if k != "status"} | {
            "metadata": {k: v for k, v in obj["metadata"].items() if k not in ("uid", "resourceVersion", "creationTimestamp")}})
        if namespace == ns or name.endswith(REF):
            assert obj["metadata"]["labels"]["supaplatform.io/ref"] == REF, (kind, name)
            assert obj["metadata"]["labels"]["supaplatform.io/org"] == "acme", (kind, name)
    objs = cluster.kube.objects
    assert objs[("Namespace", "", ns)]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert objs[("ResourceQuota", ns, "tenant-quota")]["spec"]["hard"]["pods"] == "20"
    db = objs[("Database", "platform-system", f"db-{REF}")]["spec"]
    assert db == {"name": REF, "owner": f"postgres.{REF}", "cluster": {"name": "tenants"}, "ensure": "present",
                  "databaseReclaimPolicy": "delete"}
    images = {objs[("Deployment", ns, a)]["spec"]["template"]["spec"]["containers"][0]["image"]
              for a in ("postgrest", "gotrue", "edge-runtime")}
    assert images == {"postgrest/postgrest:v12.2.3", "supabase/gotrue:v2.164.0", "supabase/edge-runtime:v1.62.2"}
    # Secrets hold the credentials; no manifest spells the password.
    tenant = objs[("Secret", ns, "tenant")]["data"]
    assert base64.b64decode(tenant["jwt-secret"]).decode() == JWT_SECRET
    for key, obj in objs.items():
        if key[0] != "Secret":
            assert CREDS["db_pass"] not in str(obj), key
    policy = objs[("NetworkPolicy", ns, "tenant-isolation")]["spec"]
    assert policy["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "platform-system"}}}, {"podSelector": {}}]}]
    assert driver.check_tenant(REF) == {s: {"healthy": True, "status": "ACTIVE_HEALTHY"}
                                        for s in ("rest", "auth", "db", "pooler", "realtime", "storage")}


def test_registrations_bodies_and_kong_routes(cluster: Cluster, tmp_path: Path) -> None:
    run_plan(make_driver(cluster, tmp_path), "create")
    for fake in (cluster.supavisor, cluster.realtime, cluster.storage, cluster.kong):
        assert fake.errors == [], fake.kind
    sv = cluster.supavisor.tenants[REF]
    assert (sv["db_host"], sv["db_database"], sv["users"][0]["db_user"], sv["users"][0]["db_password"]) == (
        "tenants-rw.platform-system.svc", REF, f"postgres.{REF}", CREDS["db_pass"])
    rt = cluster.realtime.tenants[REF]
    assert rt["external_id"] == REF and rt["jwt_secret"] == JWT_SECRET
    assert rt["extensions"][0]["type"] == "postgres_cdc_rls" and rt["extensions"][0]["settings"]["db_name"] == REF
    st = cluster.storage.tenants[REF]
    assert st["anonKey"] == CREDS["anon_key"] and st["serviceKey"] == CREDS["service_role_key"]
    assert st["databaseUrl"].endswith(f"@tenants-rw.platform-system.svc:5432/{REF}")
    kong = cluster.kong.kong
    host = f"{REF}.projects.test"
    for suffix, path in (("rest", "/rest/v1/"), ("auth", "/auth/v1/"), ("realtime", "/realtime/v1/"),
                         ("storage", "/storage/v1/"), ("functions", "/functions/v1/")):
        route = kong[f"services/{REF}-{suffix}/routes/{REF}-{suffix}"]
        assert route["hosts"] == [host] and route["paths"] == [path]
        assert route["preserve_host"] is (suffix == "realtime")
        assert any(k.startswith(f"services/{REF}-{suffix}/plugins/") for k in kong)
    assert kong[f"services/{REF}-rest"]["url"] == f"http://postgrest.tenant-{REF}.svc:3000"
    keys_ = {k: v["key"] for k, v in kong.items() if "/key-auth/" in k}
    assert sorted(keys_.values()) == sorted([CREDS["anon_key"], CREDS["service_role_key"]])
    assert (tmp_path / "s3" / "supaplatform-storage" / REF / ".supaplatform").is_file()


def test_fakes_refuse_unknown_keys_and_bad_bodies(cluster: Cluster, tmp_path: Path) -> None:
    """The checks bite: an unknown key in a manifest is a 422, a wrong admin body a 400."""
    import requests

    api = KubeApi(cluster.kube.url)
    # (the typed client refuses this one itself; the fake refuses it too, for any client)
    r = requests.post(cluster.kube.url + "/api/v1/namespaces", timeout=5,
                      json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spec": {"finalisers": []}})
    assert r.status_code == 422 and "finalisers" in r.text
    with pytest.raises(KubeError) as err:
        api.apply({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Database",
                   "metadata": {"name": "d", "namespace": "platform-system"},
                   "spec": {"name": "d", "owner": "o", "cluster": {"name": "tenants"}, "reclaim": "delete"}})
    assert err.value.status == 422 and "reclaim" in str(err.value)
    driver = make_driver(cluster, tmp_path)
    with pytest.raises(Exception, match="400"):
        driver.realtime.call("POST", "/api/tenants", {"tenant": {"name": REF, "external_id": REF, "jwt_secret": "s",
                                                                "extensions": [{"type": "postgres_cdc", "settings": {}}]}})
    bad = make_driver(cluster, tmp_path, k8s_supavisor_api_secret="wrong")
    with pytest.raises(Exception, match="401"):
        bad.register_supavisor(ctx())


def test_409_is_read_and_patched_and_404_on_delete_is_success(cluster: Cluster, tmp_path: Path) -> None:
    driver = make_driver(cluster, tmp_path)
    run_plan(driver, "create")
    # Someone scaled a deployment by hand; creating again converges it (409 -> patch), creates nothing new.
    driver.kube.patch("Deployment", f"tenant-{REF}", "postgrest", {"spec": {"replicas": 5}})
    creates = dict(cluster.kube.creates)
    driver.run_step("create", "deploy_services", ctx())
    assert cluster.kube.objects[("Deployment", f"tenant-{REF}", "postgrest")]["spec"]["replicas"] == 1
    assert cluster.kube.creates == creates
    assert ("PATCH", f"/apis/apps/v1/namespaces/tenant-{REF}/deployments/postgrest") in cluster.kube.requests
    # delete twice: the second run finds everything gone (404s) and succeeds
    run_plan(driver, "delete")
    run_plan(driver, "delete")
    assert ("Namespace", "", f"tenant-{REF}") not in cluster.kube.objects


def test_a_failing_api_call_is_a_step_error_and_the_retry_converges(cluster: Cluster, tmp_path: Path) -> None:
    driver = make_driver(cluster, tmp_path)
    cluster.kube.fail("POST", r"/databases$", 500)
    steps = driver.plan("create")
    for step in steps[:steps.index("create_database")]:
        driver.run_step("create", step, ctx())
    with pytest.raises(KubeError, match="500"):
        driver.run_step("create", "create_database", ctx())
    run_plan(driver, "create", steps.index("create_database"))
    assert all(n == 1 for n in cluster.kube.creates.values())


def test_a_failed_job_is_reported_and_recreated_on_retry(cluster: Cluster, tmp_path: Path) -> None:
    driver = make_driver(cluster, tmp_path)
    for step in ("create_namespace", "create_secrets"):
        driver.run_step("create", step, ctx())
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"sql-roles-{REF}", "namespace": "platform-system"},
           "spec": {"backoffLimit": 4, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "x"}]}}}}
    driver.kube.apply(job)
    key = ("Job", "platform-system", f"sql-roles-{REF}")
    cluster.kube.objects[key]["status"] = {"failed": 5, "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}
    driver.run_step("create", "create_roles", ctx())  # the failed run is deleted and a fresh one runs
    assert cluster.kube.creates[key] == 2
    assert cluster.kube.objects[key]["spec"]["template"]["spec"]["containers"][0]["image"] == "postgres:15"


def test_crash_after_every_step_then_resume_creates_nothing_twice(cluster: Cluster, tmp_path: Path) -> None:
    reference = Cluster()
    reference.bootstrap_shared()
    ref_dir = tmp_path / "reference"
    try:
        run_plan(make_driver(reference, ref_dir), "create")
        expected = tenant_state(reference, ref_dir)
    finally:
        reference.close()
    plan = KubernetesDriver.PLANS["create"]
    for crash_at in range(len(plan)):
        c = Cluster()
        c.bootstrap_shared()
        d = tmp_path / f"crash-{crash_at}"
        try:
            driver = make_driver(c, d)
            for step in plan[:crash_at + 1]:
                driver.run_step("create", step, ctx())
            # killed before the saga recorded plan[crash_at]: a new process runs it again, and on
            fresh = make_driver(c, d)
            run_plan(fresh, "create", crash_at)
            assert tenant_state(c, d) == expected, plan[crash_at]
            assert all(n == 1 for n in c.kube.creates.values()), (plan[crash_at], c.kube.creates)
            assert c.realtime.writes == {f"POST {REF}": 1}, plan[crash_at]
        finally:
            c.close()


def test_pause_scales_to_zero_and_restore_brings_it_back(cluster: Cluster, tmp_path: Path) -> None:
    driver = make_driver(cluster, tmp_path)
    run_plan(driver, "create")
    before = tenant_state(cluster, tmp_path)
    run_plan(driver, "pause")
    ns = f"tenant-{REF}"
    for app in ("postgrest", "gotrue", "edge-runtime"):
        assert cluster.kube.objects[("Deployment", ns, app)]["spec"]["replicas"] == 0
    assert driver.check_tenant(REF)["rest"] == {"healthy": False, "status": "UNHEALTHY",
                                                "error": "postgrest is scaled to zero (paused)"}
    assert ("Database", "platform-system", f"db-{REF}") in cluster.kube.objects  # data kept
    run_plan(driver, "restore")
    assert tenant_state(cluster, tmp_path) == before


def test_dedicated_cluster_mode(cluster: Cluster, tmp_path: Path) -> None:
    driver = make_driver(cluster, tmp_path, k8s_database_mode="dedicated")
    run_plan(driver, "create")
    ns = f"tenant-{REF}"
    cl = cluster.kube.objects[("Cluster", ns, "db")]
    assert cl["spec"]["bootstrap"]["initdb"] == {"database": REF, "owner": f"postgres.{REF}", "secret": {"name": f"db-{REF}"}}
    assert ("Database", "platform-system", f"db-{REF}") not in cluster.kube.objects
    assert cluster.supavisor.tenants[REF]["db_host"] == f"db-rw.{ns}.svc"
    run_plan(driver, "pause")
    assert cluster.kube.objects[("Cluster", ns, "db")]["metadata"]["annotations"]["cnpg.io/hibernation"] == "on"
    run_plan(driver, "restore")
    assert cluster.kube.objects[("Cluster", ns, "db")]["status"]["readyInstances"] == 1
    run_plan(driver, "delete")
    assert {k for k in cluster.kube.objects if k[1] == ns or k[0] == "Namespace" and k[2] == ns} == set()


# ---- the saga on the kubernetes driver ----------------------------------------------------------

class CrashingDriver(KubernetesDriver):
    """Dies (like SIGKILL) right after a step's effect, before the saga records it."""

    crash_after: str | None = None

    def run_step(self, operation: str, step: str, ctx_: StepContext) -> dict[str, Any]:
        out = super().run_step(operation, step, ctx_)
        if step == self.crash_after:
            self.crash_after = None
            raise Crash()
        return out


class Creds:
    def get_tenant_credentials(self, ref: str) -> dict[str, str]:
        return dict(CREDS)


def _saga_world(cluster: Cluster, tmp_path: Path) -> tuple[ProvisionerApplication, Any]:
    settings = make_test_settings("k8s").with_overrides(**cluster.settings_overrides())
    app = build(settings, in_memory=True)
    assert app.plans == dict(KubernetesDriver.PLANS)  # bootstrap takes the plans from the selected driver
    app.retry = RetryPolicy(max_attempts=3, base_delay_ms=1)

    def new_driver() -> CrashingDriver:
        return CrashingDriver(settings, LocalObjectStore(tmp_path / "s3"), kube=KubeApi(settings.k8s_api_url),
                              wait_timeout_s=5, poll_s=0.01)
    return app, new_driver


def _run(app: ProvisionerApplication, driver: KubernetesDriver, operation: str, crash_after: str | None = None) -> dict[str, Any]:
    saga = app.open_saga(operation, REF, f"op-{operation}-{uuid.uuid4()}", org_slug="acme",
                         ctx={"correlation_id": "c", "causation_id": "m"})
    runner = SagaRunner(driver, MemorySagaLocks(), retry=app.retry, sleep=lambda s: None)
    if crash_after:
        driver.crash_after = crash_after  # type: ignore[attr-defined]
        with pytest.raises(Crash):
            runner.run(app, saga["saga_id"], Creds())
        # a new provisioner process: a new driver, new locks; the saga resumes from its events
        runner = SagaRunner(driver, MemorySagaLocks(), retry=app.retry, sleep=lambda s: None)
    done = runner.run(app, saga["saga_id"], Creds())
    assert done is not None
    return done


def test_saga_reaches_active_healthy_and_lifecycle_leaves_the_cluster_as_expected(cluster: Cluster, tmp_path: Path) -> None:
    app, new_driver = _saga_world(cluster, tmp_path)
    driver = new_driver()
    shared_before = cluster.kube.keys()
    done = _run(app, driver, "create")
    assert done["status"] == "succeeded", done
    assert done["outcome"]["connection"] == driver.connection_info(REF)
    assert {v["status"] for v in driver.check_tenant(REF).values()} == {"ACTIVE_HEALTHY"}
    created = tenant_state(cluster, tmp_path)
    assert created["objects"][f"Namespace||tenant-{REF}"]["labels"]["supaplatform.io/org"] == "acme"
    assert _run(app, driver, "pause")["status"] == "succeeded"
    assert {k for k, v in driver.check_tenant(REF).items() if not v["healthy"]} == {"rest", "auth"}
    assert _run(app, driver, "restore")["status"] == "succeeded"
    assert tenant_state(cluster, tmp_path) == created
    assert _run(app, driver, "delete")["status"] == "succeeded"
    # nothing left: no namespace, secret, job or database of the tenant, no registration, no S3 prefix
    assert cluster.kube.keys() == shared_before
    assert cluster.registrations() == {"supavisor": [], "realtime": [], "storage": [], "kong": []}
    assert list((tmp_path / "s3" / "supaplatform-storage").rglob("*.supaplatform")) == []
    app.close()


@pytest.mark.parametrize("operation", ["create", "delete"])
def test_saga_survives_a_kill_at_every_step_without_duplicates(operation: str, tmp_path: Path) -> None:
    plan = KubernetesDriver.PLANS[operation]
    for step in plan:
        c = Cluster()
        c.bootstrap_shared()
        d = tmp_path / f"{operation}-{step}"
        try:
            app, new_driver = _saga_world(c, d)
            shared_before = c.kube.keys()
            if operation == "delete":
                assert _run(app, new_driver(), "create")["status"] == "succeeded"
            done = _run(app, new_driver(), operation, crash_after=step)
            assert done["status"] == "succeeded", (step, done)
            assert all(n == 1 for n in c.kube.creates.values()), (step, c.kube.creates)
            if operation == "create":
                assert c.realtime.writes == {f"POST {REF}": 1}
                assert {v["status"] for v in new_driver().check_tenant(REF).values()} == {"ACTIVE_HEALTHY"}
            else:
                assert c.kube.keys() == shared_before, step
                assert c.registrations() == {"supavisor": [], "realtime": [], "storage": [], "kong": []}
            app.close()
        finally:
            c.close()


def test_restore_of_a_deleted_project_fails_clearly(cluster: Cluster, tmp_path: Path) -> None:
    driver = make_driver(cluster, tmp_path)
    with pytest.raises(StepError, match="not deployed") as err:
        driver.run_step("restore", "scale_up", ctx())
    assert err.value.permanent


def test_health_speaks_the_v1_health_route_like_the_local_driver(cluster: Cluster, tmp_path: Path) -> None:
    """The projects service turns check_tenant into GET /v1/projects/{ref}/health whatever the
    driver: names and statuses must be the Management API's (V1ServiceHealthResponse)."""
    spec = json.loads((Path(__file__).resolve().parents[4] / "shared" / "reference" /
                       "supabase-management-api-v1.json").read_text())
    health = spec["components"]["schemas"]["V1ServiceHealthResponse"]["properties"]
    driver = make_driver(cluster, tmp_path)
    for moment in ("before", "created", "paused"):
        if moment == "created":
            run_plan(driver, "create")
        if moment == "paused":
            run_plan(driver, "pause")
        for name, check in driver.check_tenant(REF).items():
            assert name in health["name"]["enum"], name
            assert check["status"] in health["status"]["enum"], (moment, name, check)
            assert check["healthy"] is (check["status"] == "ACTIVE_HEALTHY")


def test_studio_on_demand_per_project(cluster: Cluster, tmp_path: Path) -> None:
    driver = make_driver(cluster, tmp_path)
    # Not provisioned on this cluster: no Studio for it.
    with pytest.raises(StepError):
        driver.ensure_studio(REF, "acme")
    run_plan(driver, "create")
    ns = f"tenant-{REF}"
    assert not any(k[0] == "Deployment" and k[2] in ("studio", "pg-meta") for k in cluster.kube.objects)

    # Opened: Studio and its pg-meta, each a Deployment and a Service in the tenant's namespace.
    out = driver.ensure_studio(REF, "acme")
    assert out["url"] == f"http://studio.{ns}.svc:3000"
    assert sorted(out["created"]) == ["Deployment/pg-meta", "Deployment/studio", "Service/pg-meta", "Service/studio"]
    assert cluster.kube.invalid == []
    objs = cluster.kube.objects
    for key in (("Deployment", ns, "studio"), ("Deployment", ns, "pg-meta"), ("Service", ns, "studio"),
                ("Service", ns, "pg-meta")):
        obj = objs[key]
        validate_object({k: v for k, v in obj.items() if k != "status"} | {
            "metadata": {k: v for k, v in obj["metadata"].items() if k not in ("uid", "resourceVersion", "creationTimestamp")}})
        assert obj["metadata"]["labels"]["supaplatform.io/ref"] == REF, key
        assert CREDS["db_pass"] not in str(obj) and JWT_SECRET not in str(obj), key  # secrets by reference only
    studio = objs[("Deployment", ns, "studio")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in studio["env"]}
    assert env["STUDIO_PG_META_URL"]["value"] == f"http://pg-meta.{ns}.svc:8080"
    assert env["SUPABASE_SERVICE_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "tenant", "key": "service-role-key"}
    assert studio["image"] == driver.settings.k8s_studio_image
    meta_env = {e["name"]: e for e in objs[("Deployment", ns, "pg-meta")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert meta_env["PG_META_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "tenant", "key": "db-uri"}

    # Opened again: the same objects (create-or-get), nothing new.
    assert driver.ensure_studio(REF, "acme")["created"] == []
    # Idle: scaled to zero; opened again: back to one.
    driver.stop_studio(REF)
    assert objs[("Deployment", ns, "studio")]["spec"]["replicas"] == 0
    driver.ensure_studio(REF, "acme")
    assert objs[("Deployment", ns, "studio")]["spec"]["replicas"] == 1
    # A paused project runs nothing, its Studio included; restore leaves Studio to its next opening.
    run_plan(driver, "pause")
    assert objs[("Deployment", ns, "studio")]["spec"]["replicas"] == 0
    assert objs[("Deployment", ns, "pg-meta")]["spec"]["replicas"] == 0
    run_plan(driver, "restore")
    assert objs[("Deployment", ns, "studio")]["spec"]["replicas"] == 0
    assert objs[("Deployment", ns, "postgrest")]["spec"]["replicas"] == 1


def test_studio_upstream_rpc_starts_the_projects_studio(cluster: Cluster, tmp_path: Path) -> None:
    """The provisioner's `studio_upstream` (what the gateway's Studio bridge asks on the code
    exchange): the driver's ensure_studio behind it, bad refs and unprovisioned projects refused."""
    from services.shared.errors import InvalidInput, NotFound

    driver = make_driver(cluster, tmp_path)
    runner = SagaRunner(driver, MemorySagaLocks())
    with pytest.raises(InvalidInput):
        runner.studio_upstream("../etc", "acme")
    with pytest.raises(NotFound):
        runner.studio_upstream(REF, "acme")  # no tenant on this cluster yet
    run_plan(driver, "create")
    ns = f"tenant-{REF}"
    assert runner.studio_upstream(REF, "acme") == {"url": f"http://studio.{ns}.svc:3000"}
    assert cluster.kube.objects[("Deployment", ns, "studio")]["spec"]["replicas"] == 1
    driver.stop_studio(REF)
    assert runner.studio_upstream(REF, "acme")["url"].endswith(":3000")  # idle Studio: scaled back up
    assert cluster.kube.objects[("Deployment", ns, "studio")]["spec"]["replicas"] == 1
