"""Install what the chart and the kubernetes driver need: the CloudNativePG operator,
RabbitMQ, Kong and MinIO (or an external S3), the platform-system namespace and the shared
CNPG Cluster the tenants' databases live in.

    python infra/scripts/install_prerequisites.py [--dry-run] [--config prerequisites.yaml]

Needs helm and kubectl on PATH; --dry-run needs neither: it prints the commands and renders
and validates the manifests it would apply, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from _common import Runner, parser, validate_documents, write_output

HERE = Path(__file__).resolve().parent


def shared_manifests(namespace: str, cluster: str = "tenants", instances: int = 3, size: str = "100Gi") -> dict[str, str]:
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": namespace, "labels": {"supaplatform.io/part": "platform",
                                                     "pod-security.kubernetes.io/enforce": "baseline"}}}
    cnpg = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": cluster, "namespace": namespace, "labels": {"supaplatform.io/part": "database"}},
            "spec": {"instances": instances, "enableSuperuserAccess": True, "storage": {"size": size},
                     "postgresql": {"parameters": {"max_connections": "500"}}}}
    return {"namespace.yaml": yaml.safe_dump(ns), "tenants-cluster.yaml": yaml.safe_dump(cnpg)}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=HERE / "prerequisites.yaml")
    args = p.parse_args(argv)
    config: dict[str, Any] = yaml.safe_load(args.config.read_text())
    r = Runner(args.dry_run)
    r.require("helm", "kubectl")
    manifests = shared_manifests(args.namespace)
    validate_documents(manifests)
    write_output(args.output, manifests)
    r.run(["kubectl", "apply", "-f", "-"], stdin=manifests["namespace.yaml"])
    for c in config["charts"]:
        r.run(["helm", "repo", "add", "--force-update", c["name"], c["repo"]])
    for c in config["charts"]:
        cmd = ["helm", "upgrade", "--install", c["name"], f"{c['name']}/{c['chart']}", "--version", str(c["version"]),
               "--namespace", c["namespace"], "--create-namespace", "--wait"]
        for k, v in (c.get("set") or {}).items():
            cmd += ["--set", f"{k}={v}"]
        r.run(cmd)
    r.run(["kubectl", "apply", "-f", "-"], stdin=manifests["tenants-cluster.yaml"])
    print("prerequisites " + ("rendered (dry run)" if args.dry_run else "installed"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
