"""Runs localstripe (PyPI: a fake but stateful Stripe API server, for tests) on loopback only.

localstripe's own command listens on every interface and keeps its state in a shared file
under /tmp; the tests want neither: `python scripts/localstripe_server.py --port N` serves
on 127.0.0.1:N with its state in memory, so each run starts empty.
"""

from __future__ import annotations

import argparse

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    import localstripe.resources as resources
    from localstripe.server import app

    resources.Store.dump_to_disk = lambda self: None  # state stays in this process
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
