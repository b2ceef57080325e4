"""infra/scripts: each script's --dry-run renders and validates offline and runs no command;
without --dry-run each runs the expected helm/kubectl commands (stand-ins on PATH record them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .chart import CHART, validate_strict
from .fakes import validate_object

pytestmark = pytest.mark.timeout(180)

SCRIPTS = CHART.parents[1] / "scripts"


@pytest.fixture
def tools(tmp_path: Path) -> tuple[Path, Path]:
    """helm and kubectl stand-ins that record their argv (and stdin) and succeed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("helm", "kubectl"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {log}\n"
                          f"if [ \"$1\" = apply ]; then echo --- >> {log}.stdin; cat >> {log}.stdin; fi\n")
        script.chmod(0o755)
    return bin_dir, log


def run(script: str, *args: str, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True,
                          env=env, timeout=150)


def test_prerequisites_dry_run_renders_offline_and_runs_nothing(tools: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir, log = tools
    out = tmp_path / "out"
    done = run("install_prerequisites.py", "--dry-run", "--output", str(out), bin_dir=bin_dir)
    assert done.returncode == 0, done.stderr
    assert not log.exists(), "a dry run ran a command"
    for chart in ("cnpg/cloudnative-pg", "rabbitmq/rabbitmq", "kong/kong", "minio/minio"):
        assert f" {chart} --version " in done.stdout
    cluster = yaml.safe_load((out / "tenants-cluster.yaml").read_text())
    validate_object(cluster)  # CNPG schema subset
    validate_strict(yaml.safe_load((out / "namespace.yaml").read_text()))


def test_prerequisites_runs_the_commands_in_order(tools: tuple[Path, Path]) -> None:
    bin_dir, log = tools
    done = run("install_prerequisites.py", bin_dir=bin_dir)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "kubectl apply -f -" and calls[-1] == "kubectl apply -f -"
    installs = [c.split()[3] for c in calls if c.startswith("helm upgrade --install")]
    assert installs == ["cnpg", "rabbitmq", "kong", "minio"]  # the operator before anything uses it
    applied = [d for d in yaml.safe_load_all(Path(f"{log}.stdin").read_text()) if d]
    assert [d["kind"] for d in applied] == ["Namespace", "Cluster"]


@pytest.mark.parametrize("values", [[], ["ci/external.yaml"], ["ci/minimal.yaml"]])
def test_install_chart_dry_run(values: list[str], tools: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir, log = tools
    args = [a for v in values for a in ("-f", str(CHART / v))]
    done = run("install_chart.py", "--dry-run", "--output", str(tmp_path / "out"), *args, bin_dir=bin_dir)
    assert done.returncode == 0, done.stderr
    assert not log.exists()
    assert "valid for Kubernetes 1.30" in done.stdout and "12 Deployment" in done.stdout
    rendered = list((tmp_path / "out").rglob("*.yaml"))
    assert rendered and all(list(yaml.safe_load_all(p.read_text())) is not None for p in rendered)


def test_install_chart_refuses_bad_values_before_running_helm(tools: tuple[Path, Path], tmp_path: Path) -> None:
    bin_dir, log = tools
    bad = tmp_path / "bad.yaml"
    bad.write_text("processes:\n  relay:\n    replicas: 3\n")
    done = run("install_chart.py", "-f", str(bad), bin_dir=bin_dir)
    assert done.returncode != 0 and "maximum" in done.stderr
    assert not log.exists()


def test_install_chart_and_helm_test_run_helm(tools: tuple[Path, Path]) -> None:
    bin_dir, log = tools
    assert run("install_chart.py", "--release", "sp", "-f", str(CHART / "ci/minimal.yaml"), bin_dir=bin_dir).returncode == 0
    done = run("helm_test.py", "--release", "sp", bin_dir=bin_dir)
    assert done.returncode == 0, done.stderr
    assert "test pods: sp-supaplatform-test-health" in done.stdout
    calls = log.read_text().splitlines()
    assert calls == [f"helm upgrade --install sp {CHART} --namespace platform-system --create-namespace --wait "
                     f"--timeout 10m -f {CHART / 'ci/minimal.yaml'}",
                     "helm test sp --namespace platform-system --logs --timeout 5m"]


def test_helm_test_dry_run(tools: tuple[Path, Path]) -> None:
    bin_dir, log = tools
    done = run("helm_test.py", "--dry-run", bin_dir=bin_dir)
    assert done.returncode == 0, done.stderr
    assert "+ helm test supaplatform" in done.stdout and not log.exists()


def test_scripts_say_what_is_missing_without_helm(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"PATH": str(empty)}
    done = subprocess.run([sys.executable, str(SCRIPTS / "helm_test.py")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode != 0 and "needs helm on PATH" in done.stderr
