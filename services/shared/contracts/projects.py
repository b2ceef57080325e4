"""Contracts published by the projects service (exchange `projects.events`).

Requests to the provisioner carry no secrets: it fetches credentials over RPC.
"""

from marshmallow import Schema, fields, validate

from .registry import contract

REF = validate.Regexp(r"^[a-z]{20}$")
STATUSES = ("COMING_UP", "ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY", "PAUSING", "INACTIVE", "RESTORING", "GOING_DOWN",
            "REMOVED", "INIT_FAILED", "PAUSE_FAILED", "RESTORE_FAILED", "UNKNOWN")


@contract("project_requested", 1, "projects", "A project was created; the provisioner should build its tenant.")
class ProjectRequestedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    org_slug = fields.String(required=True)
    name = fields.String(required=True)
    region = fields.String(required=True)
    operation_id = fields.String(required=True, metadata={"description": "Identifies this provisioning run (saga)"})


@contract("project_pause_requested", 1, "projects", "A project should be paused: data kept, resources freed.")
class ProjectPauseRequestedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation_id = fields.String(required=True)


@contract("project_restore_requested", 1, "projects", "A paused project should be restored from its backup.")
class ProjectRestoreRequestedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation_id = fields.String(required=True)


@contract("project_deletion_requested", 1, "projects", "A project should be deleted with all its infrastructure.")
class ProjectDeletionRequestedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation_id = fields.String(required=True)


@contract("project_status_changed", 1, "projects", "A project's status changed (for integrators and dashboards).")
class ProjectStatusChangedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    org_slug = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    reason = fields.String(required=True, allow_none=True, metadata={"description": "Why, when it failed"})
