"""The gateway's usage meter: counts API requests and egress bytes per project and minute on
project-scoped requests, and hands the counts to the usage outbox in batches.

Imports werkzeug, eventsourcing (through the outbox), the shared meter
(services/shared/usage.py, which the realtime server uses too) and the standard library.
Counting is a dict update in the request's path; a background thread (a green one in the nameko
process) saves what was counted every `usage_flush_interval_ms` or as soon as
`usage_batch_max_records` records wait, one batch per save, never a message per request.
Stopping flushes what is left, so a clean shutdown loses nothing.

Which requests count here: paths naming a project (/v1/projects/<ref>...,
/platform/projects/<ref>...) whose answer is neither 404 (no such project, or not yours) nor
401 (not signed in). The project APIs are counted by the project edge (gateway/edge/app.py)
with this same meter: every answer but a 404. The project's organization comes from the
projects service once per project and process.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterable, Iterator

from werkzeug.wrappers import Request, Response

from services.shared.usage import UsageMeter

log = logging.getLogger("gateway.usage")

PROJECT_PATH = re.compile(r"^/(v1/projects|platform/projects)/([a-z]{20})(?:/|$)")


class GatewayMeter(UsageMeter):
    """The shared meter, plus what counts an HTTP request in the gateway (werkzeug)."""

    # -- counting --------------------------------------------------------------------------------
    def observe(self, request: Request, response: Response, lookup: Callable[[str], str]) -> Response:
        """Count one answered request; returns the response (wrapped if it is streamed, to
        count the bytes actually sent)."""
        m = PROJECT_PATH.match(request.path)
        if m is None or response.status_code in (401, 404):
            return response
        org = self.directory.org_of(m.group(2), lookup)
        if org is None:
            return response
        ref = m.group(2)
        if request.method == "HEAD":
            self.add(org, ref, requests=1, egress=0)
            return response
        if response.is_sequence:
            self.add(org, ref, requests=1, egress=sum(len(chunk) for chunk in response.iter_encoded()))
            return response
        # Streamed (e.g. a file download): count the bytes as they leave. Never
        # calculate_content_length() here: it would read the whole stream into memory.
        self.add(org, ref, requests=1, egress=0)
        response.response = self._counting(response.response, org, ref)
        return response

    def _counting(self, body: Iterable[Any], org: str, ref: str) -> Iterator[Any]:
        sent = 0
        try:
            for chunk in body:
                sent += len(chunk.encode() if isinstance(chunk, str) else chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if callable(close):
                close()
            self.add(org, ref, requests=0, egress=sent)


def build_meter(settings: Any) -> GatewayMeter:
    """The meter of a gateway process, saving to its usage outbox, flusher running."""
    from services.shared.eventstore import open_application

    from .usage_outbox import UsageOutbox

    # One thread saves, about once a second: one connection is plenty.
    meter = GatewayMeter(open_application(UsageOutbox, settings, pool_size=1, max_overflow=1),
                       flush_interval=settings.usage_flush_interval_ms / 1000,
                       max_records=settings.usage_batch_max_records)
    meter.start()
    return meter
