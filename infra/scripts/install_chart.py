"""Install or upgrade the supaplatform chart.

    python infra/scripts/install_chart.py [--dry-run] [-f values.yaml ...] [--release sp]

Lints (strict), renders and validates the chart first, offline, with the same values; then
runs helm upgrade --install. --dry-run stops after the offline part and prints the command."""

from __future__ import annotations

from _common import CHART, chart_parser, render_for, validate_documents, write_output


def main(argv: list[str] | None = None) -> int:
    args = chart_parser(__doc__.splitlines()[0]).parse_args(argv)
    r, rendered = render_for(args)
    objects = validate_documents(rendered)
    kinds: dict[str, int] = {}
    for o in objects:
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
    print(f"chart renders {len(objects)} objects, valid for Kubernetes 1.30: "
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    write_output(args.output, rendered)
    cmd = ["helm", "upgrade", "--install", args.release, str(CHART), "--namespace", args.namespace,
           "--create-namespace", "--wait", "--timeout", "10m"]
    for f in args.values:
        cmd += ["-f", str(f)]
    r.run(cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
