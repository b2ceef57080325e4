"""The project edge's request log (gateway/edge/requestlog.py): what one request records, with
secrets redacted, and a bounded buffer that keeps what a failed flush held."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.edge.requestlog import RequestLog, records_for


def test_a_sign_in_is_an_edge_record_and_an_auth_login() -> None:
    recs = records_for("abcdefghijklmnopqrst", "auth/v1", "POST", "/token", "grant_type=password&apikey=eyJsecret",
                       200, 12.34, "rid-1", "10.0.0.1", "supabase-js", 1.5)
    assert [r["source"] for r in recs] == ["edge_logs", "auth_logs"]
    edge, auth = recs
    assert edge["attributes"]["request.path"] == "/auth/v1/token?grant_type=password&apikey=[redacted]"
    assert edge["attributes"]["response.status_code"] == 200 and edge["attributes"]["request_id"] == "rid-1"
    assert "eyJsecret" not in str(recs)
    assert auth["attributes"]["action"] == "login" and auth["attributes"]["path"].startswith("/token")
    # A refused sign-in is no login, and says it failed.
    failed = records_for("abcdefghijklmnopqrst", "auth/v1", "POST", "/token", "", 400, 1, "rid-2", None, None, 2)[1]
    assert "action" not in failed["attributes"] and failed["severity"] == "WARNING"


def test_rest_is_an_edge_record_only_and_storage_has_its_own() -> None:
    assert [r["source"] for r in records_for("r" * 20, "rest/v1", "GET", "/todos", "", 200, 1, "i", None, None, 0)] \
        == ["edge_logs"]
    assert [r["source"] for r in records_for("r" * 20, "storage/v1", "GET", "/bucket", "", 500, 1, "i", None, None, 0)] \
        == ["edge_logs", "storage_logs"]


def test_the_buffer_is_bounded_and_a_failed_flush_keeps_its_records() -> None:
    saved: list[list[dict[str, Any]]] = []
    fail = {"now": True}

    def sink(batch: list[dict[str, Any]]) -> None:
        if fail["now"]:
            raise ConnectionError("broker down")
        saved.append(batch)

    log = RequestLog(sink, max_pending=5, max_batch=2)
    log.add([{"n": i} for i in range(7)])
    assert len(log.pending) == 5 and log.dropped == 2  # never more than the bound, the rest counted
    with pytest.raises(ConnectionError):
        log.flush()
    assert len(log.pending) == 5  # kept for the next flush
    fail["now"] = False
    assert log.flush() == 5 and [len(b) for b in saved] == [2, 2, 1] and log.pending == []
