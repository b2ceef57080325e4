"""Platform admins act on projects of organizations they do not belong to, through the
gateway: pause, restore and delete answer 200 (not the membership pre-check's 404), and the
project goes through the same states as for its owner. A stranger who is no admin gets 403."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.test_project_lifecycle import new_org, wait_status


def test_admin_pauses_restores_and_deletes_a_project_of_another_org(http: Any, rpc: Any,
                                                                     user_token: dict[str, str]) -> None:
    owner = user_token["token"]
    slug = new_org(http, owner, "Admin Target")
    r = http.post("/v1/projects", token=owner, json={"name": "Theirs", "organization_slug": slug,
                                                    "db_pass": "Tenant-Pass-123"})
    assert r.status_code == 201, r.text
    ref = r.json()["ref"]
    assert wait_status(http, owner, ref, {"ACTIVE_HEALTHY", "INIT_FAILED"})["status"] == "ACTIVE_HEALTHY"

    stranger = f"stranger-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(stranger, "correct horse battery")
    stranger_token = rpc.orgs.issue_token(stranger, "t")["token"]
    r = http.post(f"/platform/admin/projects/{ref}/pause", token=stranger_token)
    assert r.status_code == 403, r.text

    admin = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    rpc.orgs.register_user(admin, "correct horse battery")
    rpc.orgs.promote_user(admin)
    admin_token = rpc.orgs.issue_token(admin, "t")["token"]
    # The admin is no member of the project's organization: the project routes say 404 ...
    assert http.get(f"/v1/projects/{ref}", token=admin_token).status_code == 404
    # ... and the admin routes act on it.
    r = http.post(f"/platform/admin/projects/{ref}/pause", token=admin_token)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "PAUSING"
    assert wait_status(http, owner, ref, {"INACTIVE", "PAUSE_FAILED"})["status"] == "INACTIVE"
    r = http.post(f"/platform/admin/projects/{ref}/restore", token=admin_token)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "RESTORING"
    assert wait_status(http, owner, ref, {"ACTIVE_HEALTHY", "RESTORE_FAILED"})["status"] == "ACTIVE_HEALTHY"
    r = http.request("DELETE", f"/platform/admin/projects/{ref}", token=admin_token)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "GOING_DOWN"
    assert wait_status(http, owner, ref, {"REMOVED"})["status"] == "REMOVED"
