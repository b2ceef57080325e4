"""Shared by the deployment scripts: run a command (or, with --dry-run, only print it),
render the chart offline (helm-python-sdk: Helm's Go SDK, no helm binary) and validate what
comes out (kubernetes-validate strict)."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "infra" / "helm" / "supaplatform"
KUBE_VERSION = "1.30.0"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dry-run", action="store_true",
                   help="render and validate everything offline; print the commands, run none")
    p.add_argument("--namespace", default="platform-system", help="namespace of the platform (default: platform-system)")
    p.add_argument("--output", type=Path, help="with --dry-run: write the rendered manifests here")
    return p


def chart_parser(description: str) -> argparse.ArgumentParser:
    """`parser` plus what every chart script takes: values files (-f) and the release name."""
    p = parser(description)
    p.add_argument("-f", "--values", type=Path, action="append", default=[])
    p.add_argument("--release", default="supaplatform")
    return p


class Runner:
    def __init__(self, dry_run: bool):
        self.dry_run = dry_run

    def require(self, *tools: str) -> None:
        if self.dry_run:
            return
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            sys.exit(f"needs {', '.join(missing)} on PATH (or use --dry-run to render offline)")

    def run(self, argv: list[str], *, stdin: str | None = None) -> None:
        print("+ " + " ".join(shlex.quote(a) for a in argv) + (" <<manifests" if stdin else ""), flush=True)
        if self.dry_run:
            return
        done = subprocess.run(argv, input=stdin, text=True)
        if done.returncode:
            sys.exit(f"{argv[0]} exited with {done.returncode}")


def load_values(files: list[Path]) -> dict[str, Any]:
    import yaml

    merged: dict[str, Any] = {}

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        for k, v in b.items():
            a[k] = merge(dict(a.get(k) or {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    for f in files:
        merge(merged, yaml.safe_load(f.read_text()) or {})
    return merged


def validate_documents(texts: dict[str, str]) -> list[dict[str, Any]]:
    """Parse every YAML document (the SDK returns unparsable YAML silently) and validate each
    object strictly for Kubernetes 1.30 (kinds it knows; CRDs are reported, not validated)."""
    import kubernetes_validate
    import yaml

    objects = []
    for name, text in sorted(texts.items()):
        if not name.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                print(f"  (no built-in schema for {doc['apiVersion']} {doc['kind']}: checked by the driver tests)")
            except kubernetes_validate.ValidationError as exc:
                sys.exit(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
            objects.append(doc)
    return objects


def render_chart(values: dict[str, Any], release: str, namespace: str) -> dict[str, str]:
    import helm_python as helm

    report = helm.lint(str(CHART), values, strict=True, kube_version="v" + KUBE_VERSION)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    if problems:
        sys.exit(f"helm lint: {problems}")
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=release, namespace=namespace, is_install=True)


def write_output(out: Path | None, texts: dict[str, str]) -> None:
    if out is None:
        return
    for name, text in texts.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"rendered manifests written to {out}")


def render_for(args: argparse.Namespace) -> tuple[Runner, dict[str, str]]:
    """A Runner for `args` (helm required) and the chart rendered offline with args' values,
    release and namespace."""
    r = Runner(args.dry_run)
    r.require("helm")
    return r, render_chart(load_values(args.values), args.release, args.namespace)
