"""End to end: requests to a project through the gateway are counted, batched into the usage
outbox, relayed, folded by metering's consumer and shown, exactly, by the usage route."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.support import wait_for


def test_requests_through_the_gateway_show_up_as_usage(http: Any, rpc: Any, user_token: dict[str, str]) -> None:
    token = user_token["token"]
    slug = http.post("/v1/organizations", token=token, json={"name": "Metered"}).json()["slug"]
    r = http.post("/v1/projects", token=token, json={"name": "metered", "organization_slug": slug,
                                                     "db_pass": "a long tenant password", "region": "us-east-1"})
    assert r.status_code == 201, r.text
    ref = r.json()["ref"]

    # Five project-scoped requests; the bytes each answer carried are the egress.
    sizes = []
    for _ in range(5):
        r = http.get(f"/v1/projects/{ref}", token=token)
        assert r.status_code == 200
        sizes.append(len(r.content))
    # Not counted: another user's request to it (404: not theirs).
    other = f"other-{time.time_ns()}@example.com"
    rpc.orgs.register_user(other, "another password")
    other_token = rpc.orgs.issue_token(other, "t")["token"]
    assert http.get(f"/v1/projects/{ref}", token=other_token).status_code == 404

    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    window = {"granularity": "hour", "start": (hour - timedelta(hours=2)).isoformat(),
              "end": (hour + timedelta(hours=2)).isoformat()}

    def total(metric: str, **extra: str) -> int:
        r = http.get(f"/platform/organizations/{slug}/usage", token=token, params={"metric": metric, **window, **extra})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["aggregate"] == "sum" and len(body["periods"]) == 4
        return sum(p["quantity"] for p in body["periods"])

    wait_for("5 requests and their egress in the usage route",
             lambda: total("api_requests") >= 5 and total("egress_bytes") >= sum(sizes), timeout=30)
    time.sleep(1.5)  # a late extra batch would show now
    assert total("api_requests") == 5
    assert total("egress_bytes") == sum(sizes)
    assert total("api_requests", project_ref=ref) == 5

    # Only members read it; budgets are set per project by owners and admins.
    assert http.get(f"/platform/organizations/{slug}/usage", token=other_token,
                    params={"metric": "api_requests"}).status_code == 404
    r = http.request("PUT", f"/platform/projects/{ref}/budgets/egress_bytes", token=token, json={"limit": 10**9})
    assert r.status_code == 200, r.text
    assert http.get(f"/platform/projects/{ref}/budgets", token=token).json() == [
        {"project_ref": ref, "metric": "egress_bytes", "limit": 10**9}]
    assert http.request("PUT", f"/platform/projects/{ref}/budgets/egress_bytes", token=other_token,
                        json={"limit": 5}).status_code == 404
    r = http.get(f"/platform/organizations/{slug}/usage", token=token, params={"metric": "nope"})
    assert r.status_code == 400 and "metric" in r.json()["errors"]
