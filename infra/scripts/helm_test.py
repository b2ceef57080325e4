"""Run the chart's helm test pods (every HTTP process answers /health, every RPC queue has a
consumer).

    python infra/scripts/helm_test.py [--dry-run] [--release supaplatform] [-f values.yaml ...]

--dry-run renders the test pods offline and validates them, and prints the command."""

from __future__ import annotations

from pathlib import Path

from _common import Runner, load_values, parser, render_chart, validate_documents, write_output


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-f", "--values", type=Path, action="append", default=[])
    p.add_argument("--release", default="supaplatform")
    args = p.parse_args(argv)
    r = Runner(args.dry_run)
    r.require("helm")
    rendered = render_chart(load_values(args.values), args.release, args.namespace)
    tests = {k: v for k, v in rendered.items() if "/templates/tests/" in k}
    pods = validate_documents(tests)
    if not pods or any(o["metadata"].get("annotations", {}).get("helm.sh/hook") != "test" for o in pods):
        raise SystemExit("the chart has no helm test pod")
    print("test pods: " + ", ".join(o["metadata"]["name"] for o in pods))
    write_output(args.output, tests)
    r.run(["helm", "test", args.release, "--namespace", args.namespace, "--logs", "--timeout", "5m"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
