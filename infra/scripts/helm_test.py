"""Run the chart's helm test pods (every HTTP process answers /health, every RPC queue has a
consumer).

    python infra/scripts/helm_test.py [--dry-run] [--release supaplatform] [-f values.yaml ...]

--dry-run renders the test pods offline and validates them, and prints the command."""

from __future__ import annotations

from _common import chart_parser, render_for, validate_documents, write_output


def main(argv: list[str] | None = None) -> int:
    args = chart_parser(__doc__.splitlines()[0]).parse_args(argv)
    r, rendered = render_for(args)
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
