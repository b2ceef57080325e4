"""The gateway's usage meter: which requests count, what a batch looks like, and that no
count is lost when a save fails or the process stops."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from gateway.usage import GatewayMeter
from services.shared.errors import NotFound

REF = "abcdefghijklmnopqrst"
OTHER = "zyxwvutsrqponmlkjihg"


class Sink:
    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.fail = fail

    def record_batch(self, records: list[dict[str, Any]]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database away")
        self.batches.append(records)


def lookup(ref: str) -> str:
    if ref == REF:
        return "acme"
    raise NotFound(f"project {ref} not found")


def request(path: str, method: str = "GET") -> Request:
    return Request(EnvironBuilder(path=path, method=method).get_environ())


def totals(sink: Sink) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for batch in sink.batches:
        for r in batch:
            key = (r["org_id"], r["project_ref"], r["metric"])
            out[key] = out.get(key, 0) + r["quantity"]
    return out


def test_project_scoped_requests_count_requests_and_body_bytes() -> None:
    sink = Sink()
    meter = GatewayMeter(sink, clock=lambda: 1_700_000_000)
    meter.observe(request(f"/v1/projects/{REF}"), Response(b"x" * 10), lookup)
    meter.observe(request(f"/platform/projects/{REF}/budgets"), Response(b"y" * 5, status=403), lookup)
    meter.observe(request(f"/v1/projects/{REF}/api-keys"), Response(b"[1,2,3,4,56]"), lookup)
    # Not counted: not project-scoped, no such project, 404, 401, the old project API path
    # (project APIs are served, and counted, by the project edge only).
    meter.observe(request(f"/p/{REF}/functions/v1/hello"), Response(b"zz"), lookup)
    meter.observe(request("/v1/projects"), Response(b"zz"), lookup)
    meter.observe(request(f"/v1/projects/{OTHER}"), Response(b"zz"), lookup)
    meter.observe(request(f"/v1/projects/{REF}/nope"), Response(b"zz", status=404), lookup)
    meter.observe(request(f"/v1/projects/{REF}"), Response(b"zz", status=401), lookup)
    assert meter.flush() == 2
    assert totals(sink) == {("acme", REF, "api_requests"): 3, ("acme", REF, "egress_bytes"): 10 + 5 + 12}


def test_streamed_bodies_are_counted_as_they_are_sent() -> None:
    sink = Sink()
    meter = GatewayMeter(sink)
    response = meter.observe(request(f"/v1/projects/{REF}/functions/stream/body"),
                             Response(iter([b"abc", "déf"]), direct_passthrough=True), lookup)
    body = b"".join(c if isinstance(c, bytes) else c.encode() for c in response.response)
    meter.flush()
    assert totals(sink) == {("acme", REF, "api_requests"): 1, ("acme", REF, "egress_bytes"): len(body)}
    assert len(body) == 7  # "déf" is four bytes in UTF-8


def test_the_organization_is_asked_once_per_project() -> None:
    asked: list[str] = []

    def counting_lookup(ref: str) -> str:
        asked.append(ref)
        return lookup(ref)

    meter = GatewayMeter(Sink())
    for _ in range(5):
        meter.observe(request(f"/v1/projects/{REF}"), Response(b"{}"), counting_lookup)
        meter.observe(request(f"/v1/projects/{OTHER}"), Response(b"{}"), counting_lookup)
    assert asked == [REF, OTHER]  # a ref that is no project is remembered as such too


def test_counts_fold_per_minute_and_batches_stay_under_the_limit() -> None:
    sink = Sink()
    meter = GatewayMeter(sink, max_records=3)
    start = 1_700_000_040  # a minute's first second
    for minute in range(4):
        for second in (0, 30, 59):
            meter.add("acme", REF, requests=1, egress=100, at=start + minute * 60 + second)
    assert meter.flush() == 4 * 2  # one record per minute and metric
    assert all(len(b) <= 3 for b in sink.batches)
    assert totals(sink) == {("acme", REF, "api_requests"): 12, ("acme", REF, "egress_bytes"): 1200}
    assert all(r["minute"] % 60 == 0 for b in sink.batches for r in b)


def test_a_failed_save_keeps_the_counts_for_the_next_flush() -> None:
    sink = Sink(fail=1)
    meter = GatewayMeter(sink)
    meter.add("acme", REF, requests=2, egress=50)
    with pytest.raises(RuntimeError):
        meter.flush()
    meter.add("acme", REF, requests=1, egress=0)
    meter.flush()
    assert totals(sink) == {("acme", REF, "api_requests"): 3, ("acme", REF, "egress_bytes"): 50}


def test_stopping_flushes_what_is_left() -> None:
    sink = Sink()
    meter = GatewayMeter(sink, flush_interval=60)
    meter.start()
    meter.add("acme", REF, requests=7, egress=70)
    meter.close()
    assert totals(sink) == {("acme", REF, "api_requests"): 7, ("acme", REF, "egress_bytes"): 70}


def test_a_full_batch_wakes_the_flusher() -> None:
    sink = Sink()
    meter = GatewayMeter(sink, flush_interval=60, max_records=4)
    meter.start()
    try:
        for i in range(4):
            meter.add("acme", REF, requests=1, egress=1, at=1_700_000_000 + 60 * i)
        for _ in range(100):  # the flusher runs at once, not after its 60 s interval
            if sink.batches:
                break
            meter.stopping.wait(0.02)
        assert sink.batches
    finally:
        meter.close()
