"""Contracts published by the projects service (exchange `projects.events`).

Requests to the provisioner carry no secrets: it fetches credentials over RPC.
"""

from marshmallow import Schema, fields, validate

from .registry import adapter, contract

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


@contract("project_status_changed", 2, "projects",
          "A project's status changed, with how far its operation got (for integrators and dashboards).")
class ProjectStatusChangedV2(Schema):
    ref = fields.String(required=True, validate=REF)
    org_slug = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    reason = fields.String(required=True, allow_none=True, metadata={"description": "Why, when it failed"})
    step = fields.String(required=True, allow_none=True,
                         metadata={"description": "The step it failed at; null when the operation completed"})
    step_index = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=0),
                                metadata={"description": "Steps done (null: not recorded, for events stored "
                                          "before v2)"})
    total_steps = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=0),
                                 metadata={"description": "Steps in the operation's plan (null: not recorded)"})


# v2 is v1 plus the progress: a v1-only consumer reads a v2 message by dropping those fields.
adapter("project_status_changed", 2, 1, added=("step", "step_index", "total_steps"))
