"""The Helm chart (infra/helm/supaplatform), rendered offline with its defaults and with each
ci/*.yaml values file: lint strict clean, every object valid for Kubernetes 1.30 (strict),
golden files, and the properties the platform depends on (a workload per process of
runner.process_specs, credentials only from Secrets, single processes stay single)."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from services.shared.runner import process_specs
from services.shared.settings import Settings, env_name, load_settings

from .chart import CHART, documents, lint, render, validate_strict

pytestmark = pytest.mark.timeout(120)

GOLDEN = Path(__file__).parent / "golden"
CI_FILES = sorted((CHART / "ci").glob("*.yaml"))
CASES = {"defaults": {}} | {p.stem: yaml.safe_load(p.read_text()) for p in CI_FILES}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    return {case: documents(render(values)) for case, values in CASES.items()}


def by_kind(docs: list[tuple[str, dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in docs if d["kind"] == kind}


def test_ci_values_files_exist() -> None:
    assert {p.stem for p in CI_FILES} >= {"external", "minimal"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_strict_is_clean(case: str) -> None:
    report = lint(CASES[case])
    assert report["errors"] == []
    # severity 2 = warning, 3 = error; 1 (info: "icon is recommended") is allowed.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_valid_for_kubernetes_1_30_strict(case: str, rendered: Any) -> None:
    docs = rendered[case]
    assert len(docs) > 20
    for template, obj in docs:
        try:
            validate_strict(obj)
        except Exception as exc:  # the message names the field
            pytest.fail(f"{case}: {template}: {obj['kind']}/{obj['metadata']['name']}: {getattr(exc, 'message', exc)}")


def _golden_view(docs: list[tuple[str, dict[str, Any]]]) -> str:
    """Rendered objects with the only non-deterministic parts (generated passwords) masked."""
    out = []
    for template, obj in docs:
        obj = json.loads(json.dumps(obj))
        if obj["kind"] == "Secret":
            obj["data"] = {k: "<generated>" if not v.startswith("ZXZhbHVhdGlvbi") else v for k, v in obj["data"].items()}
        out.append(f"# {template}\n" + yaml.safe_dump(obj, sort_keys=True))
    return "---\n".join(out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_files(case: str, rendered: Any) -> None:
    """UPDATE_GOLDEN=1 rewrites them; review the diff like code."""
    path = GOLDEN / f"{case}.yaml"
    text = _golden_view(rendered[case])
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"rendered chart differs from {path.name}: UPDATE_GOLDEN=1 after review"


def _argv_for_image(argv: list[str]) -> list[str]:
    """runner's argv as the image runs it: `python` for the interpreter, the repo-relative config."""
    root = str(CHART.parents[2]) + "/"
    return ["python" if a == sys.executable else a.replace(root, "") for a in argv]


def test_a_workload_per_platform_process_with_its_command(rendered: Any) -> None:
    deployments = by_kind(rendered["defaults"], "Deployment")
    specs = process_specs(load_settings({}))
    assert sorted(deployments) == sorted(f"sp-supaplatform-{s.name}" for s in specs)
    for spec in specs:
        container = deployments[f"sp-supaplatform-{spec.name}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == _argv_for_image(spec.argv), spec.name
        if spec.http_port:
            assert container["ports"][0]["containerPort"] == spec.http_port
            assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        else:
            assert container["readinessProbe"]["exec"]["command"] == [
                "python", "-m", "services.shared.healthcheck", spec.name]
        assert set(container["resources"]) == {"requests", "limits"}
        assert container["livenessProbe"] and container["startupProbe"]


# realtime-server keeps channels and presence in memory (no multi-node fan-out yet).
SINGLE = {"relay", "metering", "billing", "realtime-server"}


def test_single_processes_stay_single_and_the_rest_scale_out(rendered: Any) -> None:
    docs = rendered["defaults"]
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for name, dep in deployments.items():
        proc = name.removeprefix("sp-supaplatform-")
        if proc in SINGLE:
            assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate", proc
            assert name not in hpas and name not in pdbs, proc
        else:
            assert "replicas" not in dep["spec"], f"{proc}: the HPA owns replicas"
            assert hpas[name]["spec"]["scaleTargetRef"]["name"] == name
            assert hpas[name]["spec"]["minReplicas"] >= 2
            assert pdbs[name]["spec"]["minAvailable"] == 1
    assert {n.removeprefix("sp-supaplatform-") for n in hpas} >= {"gateway", "edge", "orgs", "projects", "functions-runtime"}


def test_schema_refuses_more_than_one_replica_of_a_single_process() -> None:
    with pytest.raises(helm.HelmValuesError, match="maximum"):
        render({"processes": {"relay": {"replicas": 2}}})


@pytest.mark.parametrize("values, message", [
    ({"unknownTopLevel": 1}, "additional properties 'unknownTopLevel'"),
    ({"image": {"tag": "x", "pullpolicy": "Always"}}, "additional properties 'pullpolicy'"),
    ({"credentials": {"database": {"existingSecret": "db", "passwd": "x"}}}, "additional properties 'passwd'"),
    ({"publicUrl": "platform.example.com"}, "publicUrl"),
    ({"processes": {"gateway": {"kind": "web"}}}, "kind"),
    ({"extraEnv": {"NOT_PLATFORM": "x"}}, "NOT_PLATFORM"),
])
def test_values_schema_is_strict(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as err:
        render(values)
    assert message in str(err.value)


def test_external_services_need_their_hosts() -> None:
    with pytest.raises(helm.HelmError, match="postgresql.host is required"):
        render({"postgresql": {"bundled": {"enabled": False}}})


SECRET_ENV = {env_name(f.name) for f in fields(Settings) if f.metadata.get("secret")}


def _env_of(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for _, obj in docs:
        spec = obj["spec"].get("template", {}).get("spec") if obj["kind"] in ("Deployment", "StatefulSet", "Job") else \
            obj["spec"] if obj["kind"] == "Pod" else None
        for c in (spec or {}).get("containers", []):
            out += [(obj["metadata"]["name"], e) for e in c.get("env", [])]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_credentials_only_come_from_secrets(case: str, rendered: Any) -> None:
    docs = rendered[case]
    configmap = by_kind(docs, "ConfigMap")["sp-supaplatform-env"]["data"]
    assert not SECRET_ENV & set(configmap), "a secret setting in the ConfigMap"
    for owner, env in _env_of(docs):
        if env["name"] in SECRET_ENV or "PASS" in env["name"]:
            assert "value" not in env and "secretKeyRef" in env["valueFrom"], (owner, env["name"])
    if case == "external":
        # every credential from the operator's own Secrets; the chart creates none.
        assert by_kind(docs, "Secret") == {}
        names = {env["valueFrom"]["secretKeyRef"]["name"] for _, env in _env_of(docs) if "valueFrom" in env}
        assert names == {"platform-db", "platform-amqp", "platform-master-key", "platform-s3", "platform-smtp",
                         "platform-stripe", "platform-data-plane"}
        assert configmap["PLATFORM_DB_HOST"] == "platform-db-rw.databases.svc"
        assert not by_kind(docs, "StatefulSet")


def test_generated_master_key_is_32_urlsafe_bytes(rendered: Any) -> None:
    import base64

    secret = by_kind(rendered["defaults"], "Secret")["sp-supaplatform-credentials"]
    key = base64.b64decode(secret["data"]["secret-key"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", key) and len(base64.urlsafe_b64decode(key)) == 32
    assert {"db-password", "amqp-password", "s3-access-key", "s3-secret-key"} <= set(secret["data"])


def test_configmap_settings_are_real_settings(rendered: Any) -> None:
    """A typo'd PLATFORM_ name would be ignored by load_settings: every key must be a setting."""
    known = {env_name(f.name) for f in fields(Settings)}
    for case, docs in rendered.items():
        data = by_kind(docs, "ConfigMap")["sp-supaplatform-env"]["data"]
        unknown = {k for k in data if k.startswith("PLATFORM_")} - known
        assert not unknown, (case, unknown)
        # and they load: the processes would start with these settings
        s = load_settings({k: v for k, v in data.items() if k.startswith("PLATFORM_")})
        assert s.gateway_host == "0.0.0.0" and s.credentials_file == ""


def test_provisioner_alone_gets_a_kubernetes_token_and_its_cluster_role(rendered: Any) -> None:
    docs = rendered["defaults"]
    for name, dep in by_kind(docs, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is name.endswith("-provisioner"), name
    role = by_kind(docs, "ClusterRole")["sp-supaplatform-provisioner"]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    for needed in [("", "namespaces"), ("", "secrets"), ("", "resourcequotas"), ("", "limitranges"),
                   ("apps", "deployments"), ("batch", "jobs"), ("networking.k8s.io", "networkpolicies"),
                   ("postgresql.cnpg.io", "databases"), ("postgresql.cnpg.io", "clusters")]:
        assert needed in granted, needed
    binding = by_kind(docs, "ClusterRoleBinding")["sp-supaplatform-provisioner"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sp-supaplatform-provisioner",
                                    "namespace": "platform-system"}]


def test_network_policies_and_sandbox(rendered: Any) -> None:
    docs = rendered["defaults"]
    policies = by_kind(docs, "NetworkPolicy")
    assert policies["sp-supaplatform-default-deny"]["spec"]["policyTypes"] == ["Ingress"]
    runtime = policies["sp-supaplatform-functions-runtime"]["spec"]["ingress"][0]["from"]
    assert {"app.kubernetes.io/component": "edge"}.items() <= runtime[0]["podSelector"]["matchLabels"].items()
    deployments = by_kind(docs, "Deployment")
    sandbox = deployments["sp-supaplatform-functions-runtime"]["spec"]["template"]["spec"]["securityContext"]
    assert sandbox["seccompProfile"] == {"type": "Unconfined"}
    assert deployments["sp-supaplatform-gateway"]["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"}
    assert not by_kind(rendered["minimal"], "NetworkPolicy")


def test_helm_test_pod_checks_every_http_process_and_queue(rendered: Any) -> None:
    pods = by_kind(rendered["defaults"], "Pod")
    pod = pods["sp-supaplatform-test-health"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][2]
    compile(script, "helm-test", "exec")  # the rendered script is valid Python
    for spec in process_specs(load_settings({})):
        if spec.http_port:
            assert f"http://sp-supaplatform-{spec.name}:{spec.http_port}/health" in script
        elif spec.rpc_queue:
            assert f'"{spec.rpc_queue}"' in script


def test_notes_render() -> None:
    notes = render({})["supaplatform/templates/NOTES.txt"]
    assert "helm test sp -n platform-system" in notes and "relay: worker, exactly one replica" in notes
    assert "bundled PostgreSQL RabbitMQ is single-instance" in notes
