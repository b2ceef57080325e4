"""projects domain: Project (lifecycle, credentials, settings), OrgProjects (an
organization's projects, for listing and plan limits), IdempotencyRecord (retry-safe create).

Imports eventsourcing.domain and the standard library only. Ids are uuid5 of natural keys.
Outcome handlers are idempotent: a project remembers the message ids it has applied.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("5d1f6a8e-7c3b-4e2a-9b1d-3c4e5f6a7b8c")
Meta = dict[str, Any]

TRANSITIONAL = {"COMING_UP", "PAUSING", "RESTORING", "GOING_DOWN"}
# Projects that use resources (count against plan limits): not paused, not removed.
ACTIVE = {"COMING_UP", "ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY", "RESTORING", "PAUSING", "INIT_FAILED",
          "PAUSE_FAILED", "RESTORE_FAILED"}
OPERATION_STATUS = {"create": "COMING_UP", "pause": "PAUSING", "restore": "RESTORING", "delete": "GOING_DOWN"}
FAILED_STATUS = {"create": "INIT_FAILED", "pause": "PAUSE_FAILED", "restore": "RESTORE_FAILED", "delete": "GOING_DOWN"}

DEFAULT_POSTGREST = {"db_schema": "public,graphql_public", "max_rows": 1000, "db_extra_search_path": "public,extensions",
                     "db_pool": None}


class RuleViolation(Exception):
    pass


class Project(Aggregate):
    @staticmethod
    def create_id(ref: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "project:" + ref)

    @event("Requested")
    def __init__(self, ref: str, org_slug: str, name: str, region: str, db_pass_enc: str, jwt_secret_enc: str,
                 keys_issued_at: int, operation_id: str, meta: Meta, authenticator_pass_enc: str = "") -> None:
        self.ref = ref
        self.org_slug = org_slug
        self.name = name
        self.region = region
        self.db_pass_enc = db_pass_enc
        self.jwt_secret_enc = jwt_secret_enc
        # The password of the tenant's `authenticator.<ref>` login (PostgREST's); "" for
        # projects created before REST ran (the edge then sets one of its own at start).
        self.authenticator_pass_enc = authenticator_pass_enc
        self.keys_issued_at = keys_issued_at
        self.status = "COMING_UP"
        self.operation = "create"
        self.operation_id = operation_id
        self.step: str | None = "queued"
        self.step_index = 0
        self.total_steps = 0
        self.reason: str | None = None
        self.connection: dict[str, Any] | None = None
        self.postgrest: dict[str, Any] = dict(DEFAULT_POSTGREST)
        self.auth: dict[str, Any] = {}
        self.applied: list[str] = []

    # -- commands from users -----------------------------------------------------------------
    def request_pause(self, operation_id: str, meta: Meta) -> None:
        if self.status not in ("ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY", "PAUSE_FAILED"):
            raise RuleViolation(f"only an active project can be paused (status is {self.status})")
        self._operation_started(ref=self.ref, operation="pause", operation_id=operation_id, meta=meta)

    def request_restore(self, operation_id: str, meta: Meta) -> None:
        if self.status not in ("INACTIVE", "RESTORE_FAILED"):
            raise RuleViolation(f"only a paused project can be restored (status is {self.status})")
        self._operation_started(ref=self.ref, operation="restore", operation_id=operation_id, meta=meta)

    def request_deletion(self, operation_id: str, meta: Meta) -> None:
        if self.status == "REMOVED":
            raise RuleViolation("project already deleted")
        if self.status in TRANSITIONAL and not (self.status == "GOING_DOWN" and self.reason):
            raise RuleViolation(f"project is busy ({self.status}); try again when it has finished")
        self._operation_started(ref=self.ref, operation="delete", operation_id=operation_id, meta=meta)

    @event("OperationStarted")
    def _operation_started(self, ref: str, operation: str, operation_id: str, meta: Meta) -> None:
        self.operation = operation
        self.operation_id = operation_id
        self.status = OPERATION_STATUS[operation]
        self.step, self.step_index, self.total_steps, self.reason = "queued", 0, 0, None

    def rotate_jwt_secret(self, jwt_secret_enc: str, keys_issued_at: int, meta: Meta) -> None:
        if self.status == "REMOVED":
            raise RuleViolation("project is deleted")
        self._jwt_secret_rotated(jwt_secret_enc=jwt_secret_enc, keys_issued_at=keys_issued_at, meta=meta)

    @event("JwtSecretRotated")
    def _jwt_secret_rotated(self, jwt_secret_enc: str, keys_issued_at: int, meta: Meta) -> None:
        self.jwt_secret_enc = jwt_secret_enc
        self.keys_issued_at = keys_issued_at

    @event("PostgrestConfigChanged")
    def change_postgrest(self, changes: dict[str, Any], meta: Meta) -> None:
        self.postgrest.update(changes)

    @event("AuthConfigChanged")
    def change_auth(self, changes: dict[str, Any], meta: Meta) -> None:
        self.auth.update(changes)

    @event("SettingsRestored")
    def restore_settings(self, restored_version: int, postgrest: dict[str, Any], auth: dict[str, Any],
                         meta: Meta) -> None:
        """Settings as they were at `restored_version` of this project (a new event: history
        keeps every change, the rollback included). Secret values are copied from the stored
        version server-side, never sent back to the caller."""
        self.postgrest = dict(postgrest)
        self.auth = dict(auth)

    # -- outcomes from the provisioner (idempotent on message id) ------------------------------
    def already_applied(self, message_id: str) -> bool:
        return message_id in self.applied

    def _current(self, operation_id: str) -> bool:
        return operation_id == self.operation_id

    def report_step(self, message_id: str, operation_id: str, step: str, step_index: int, total_steps: int) -> bool:
        if self.already_applied(message_id) or not self._current(operation_id) or self.status not in TRANSITIONAL:
            return False
        if step_index < self.step_index:
            return False  # a late, older progress report
        self._step_reported(message_id=message_id, step=step, step_index=step_index, total_steps=total_steps)
        return True

    @event("StepReported")
    def _step_reported(self, message_id: str, step: str, step_index: int, total_steps: int) -> None:
        self.step, self.step_index, self.total_steps = step, step_index, total_steps
        self._remember(message_id)

    def complete_operation(self, message_id: str, operation_id: str, operation: str,
                           connection: dict[str, Any] | None) -> bool:
        if self.already_applied(message_id) or not self._current(operation_id) or operation != self.operation:
            return False
        status = {"create": "ACTIVE_HEALTHY", "restore": "ACTIVE_HEALTHY", "pause": "INACTIVE", "delete": "REMOVED"}
        self._operation_completed(ref=self.ref, org_slug=self.org_slug, message_id=message_id,
                                  status=status[operation], connection=connection, total_steps=self.total_steps)
        return True

    # Version 2 of the outcome events carries the progress (for project_status_changed v2).
    # Events stored as version 1 are upcast on read: their progress is unknown (None).
    class OperationCompleted(Aggregate.Event):
        class_version = 2
        ref: str
        org_slug: str
        message_id: str
        status: str
        connection: dict[str, Any] | None
        total_steps: int | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["total_steps"] = None

    class OperationFailed(Aggregate.Event):
        class_version = 2
        ref: str
        org_slug: str
        message_id: str
        status: str
        step: str
        reason: str
        step_index: int | None
        total_steps: int | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["step_index"] = None
            state["total_steps"] = None

    @event(OperationCompleted)
    def _operation_completed(self, ref: str, org_slug: str, message_id: str, status: str,
                             connection: dict[str, Any] | None, total_steps: int | None) -> None:
        self.status = status
        self.step, self.reason = None, None
        self.step_index = self.total_steps
        if connection is not None:
            self.connection = connection
        if status == "REMOVED":
            # The tenant is gone: forget its secrets too.
            self.db_pass_enc = ""
            self.jwt_secret_enc = ""
            self.authenticator_pass_enc = ""
        self._remember(message_id)

    def fail_operation(self, message_id: str, operation_id: str, operation: str, step: str, reason: str) -> bool:
        if self.already_applied(message_id) or not self._current(operation_id) or operation != self.operation:
            return False
        self._operation_failed(ref=self.ref, org_slug=self.org_slug, message_id=message_id,
                               status=FAILED_STATUS[operation], step=step, reason=reason,
                               step_index=self.step_index, total_steps=self.total_steps)
        return True

    @event(OperationFailed)
    def _operation_failed(self, ref: str, org_slug: str, message_id: str, status: str, step: str,
                          reason: str, step_index: int | None, total_steps: int | None) -> None:
        self.status, self.step, self.reason = status, step, reason
        self._remember(message_id)

    def _remember(self, message_id: str) -> None:
        self.applied.append(message_id)
        del self.applied[:-200]


class OrgProjects(Aggregate):
    """The projects of one organization and which of them are active (for plan limits)."""

    @staticmethod
    def create_id(org_slug: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "org-projects:" + org_slug)

    @event("Started")
    def __init__(self, org_slug: str) -> None:
        self.org_slug = org_slug
        self.refs: list[str] = []
        self.active: list[str] = []

    @event("ProjectAdded")
    def add(self, ref: str) -> None:
        self.refs.append(ref)
        self.active.append(ref)

    def set_active(self, ref: str, active: bool) -> None:
        if active != (ref in self.active):
            self._activity_changed(ref=ref, active=active)

    @event("ActivityChanged")
    def _activity_changed(self, ref: str, active: bool) -> None:
        if active:
            self.active.append(ref)
        else:
            self.active.remove(ref)


class IdempotencyRecord(Aggregate):
    """Remembers the first result of a create sent with an Idempotency-Key."""

    @staticmethod
    def create_id(scope: str, key: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"idempotency:{scope}:{key}")

    @event("Recorded")
    def __init__(self, scope: str, key: str, request_hash: str, ref: str) -> None:
        self.request_hash = request_hash
        self.ref = ref
