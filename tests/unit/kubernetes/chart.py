"""Rendering the Helm chart offline (helm-python-sdk: Helm's Go SDK in a shared library, no
helm binary) and checking what comes out: every document parses as YAML, every object
passes kubernetes-validate strict for Kubernetes 1.30. Shared by the chart and script tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "infra" / "helm" / "supaplatform"
KUBE_VERSION = "1.30.0"


def render(values: dict[str, Any] | None = None, *, name: str = "sp",
           namespace: str = "platform-system") -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values or {}, name=name, namespace=namespace, is_install=True)


def documents(rendered: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Every object, parsed. yaml raises on a document the SDK rendered but YAML can't read
    (the SDK itself returns such text without complaint)."""
    out = []
    for template, text in sorted(rendered.items()):
        if not template.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            assert isinstance(doc, dict), f"{template}: a document that is not a mapping: {doc!r}"
            out.append((template, doc))
    return out


def validate_strict(obj: dict[str, Any]) -> None:
    """kubernetes-validate --strict: the schema of its kind, unknown keys rejected."""
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return helm.lint(str(CHART), values or {}, strict=True, kube_version="v" + KUBE_VERSION)
