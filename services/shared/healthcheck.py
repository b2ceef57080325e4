"""Readiness check of one platform process, for container health checks (docker-compose.yml).

`python -m services.shared.healthcheck NAME` exits 0 when NAME is ready by the rule
`platform-run` waits on (runner.ProcessSpec): a service's RPC queue has a consumer, the
gateway answers GET /health; a process with neither (the relay) is ready once running.
"""

from __future__ import annotations

import sys

import requests

from .rabbitadmin import RabbitAdmin
from .runner import ProcessSpec, process_specs
from .settings import Settings, load_settings


def is_ready(spec: ProcessSpec, settings: Settings) -> bool:
    if spec.rpc_queue:
        queue = RabbitAdmin(settings, timeout=3).queue(spec.rpc_queue)
        return bool(queue and queue.get("consumers", 0) > 0)
    if spec.http_port:
        # A gateway bound to every interface is reached through loopback.
        host = spec.http_host or settings.gateway_host
        host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        return requests.get(f"http://{host}:{spec.http_port}/health", timeout=3).ok
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    settings = load_settings()
    specs = {s.name: s for s in process_specs(settings)}
    if len(args) != 1 or args[0] not in specs:
        print(f"usage: python -m services.shared.healthcheck {{{','.join(specs)}}}", file=sys.stderr)
        return 2
    try:
        ready = is_ready(specs[args[0]], settings)
    except requests.RequestException as exc:
        print(f"{args[0]}: not ready: {exc}", file=sys.stderr)
        return 1
    if not ready:
        print(f"{args[0]}: not ready", file=sys.stderr)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
