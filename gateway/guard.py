"""The gateway's cheapest refusals, made before a nameko worker is taken (gateway/service.py
calls `early_refusal` from its HTTP entrypoint, before nameko spawns the worker).

nameko runs each request in one of `max_workers` workers; requests beyond that wait in line.
A flood of bad bearer tokens from an address already over its limit (gateway/ratelimit.py)
must not take those places from signed-in users: it is answered 429 here, in the HTTP
server's own green thread, from memory, after a short tarpit (so a client that retries at once
costs a request every TARPIT_S, not thousands a second). At most MAX_TARPIT requests wait in
the tarpit at a time; past that, refusals are immediate.
"""

from __future__ import annotations

import json
import random
from typing import Any

import eventlet
from werkzeug.wrappers import Request, Response

from . import ratelimit

TARPIT_S = 2.0
MAX_TARPIT = 2000
_tarpitted = 0


def early_refusal(request: Request) -> Response | None:
    global _tarpitted
    limiter = ratelimit.ACTIVE
    if limiter is None or not request.headers.get("Authorization"):
        return None
    retry = limiter.retry_after("token", limiter.client_ip(request))
    if retry is None:
        return None
    if _tarpitted < MAX_TARPIT:
        _tarpitted += 1
        try:
            # jittered, so a flood's requests do not all wake and come back in one wave
            eventlet.sleep(min(TARPIT_S, retry) * random.uniform(0.5, 1.0))
        finally:
            _tarpitted -= 1
    body = {"message": f"too many token attempts; try again in {retry}s"}
    return Response(json.dumps(body), status=429, mimetype="application/json",
                    headers={"Retry-After": str(retry), "Cache-Control": "no-store"})

