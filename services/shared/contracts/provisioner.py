"""Contracts published by the provisioner (exchange `provisioner.events`): saga progress
and outcomes of create / pause / restore / delete operations on tenant infrastructure."""

from marshmallow import Schema, fields, validate

from .registry import contract

REF = validate.Regexp(r"^[a-z]{20}$")
OPERATIONS = validate.OneOf(["create", "pause", "restore", "delete"])


@contract("provisioning_step_started", 1, "provisioner", "A saga began one of its steps (progress for the UI).")
class ProvisioningStepStartedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation = fields.String(required=True, validate=OPERATIONS)
    operation_id = fields.String(required=True)
    step = fields.String(required=True)
    step_index = fields.Integer(required=True, validate=validate.Range(min=1))
    total_steps = fields.Integer(required=True, validate=validate.Range(min=1))


class Connection(Schema):
    db_host = fields.String(required=True)
    db_port = fields.Integer(required=True)
    db_name = fields.String(required=True)
    db_user = fields.String(required=True)
    bucket = fields.String(required=True)


@contract("project_provisioned", 1, "provisioner", "A project's tenant infrastructure is ready.")
class ProjectProvisionedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation_id = fields.String(required=True)
    connection = fields.Nested(Connection, required=True)


@contract("project_paused", 1, "provisioner", "A project's database was backed up and its resources freed.")
class ProjectPausedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation_id = fields.String(required=True)
    backup_bytes = fields.Integer(required=True, validate=validate.Range(min=0))


@contract("project_restored", 1, "provisioner", "A paused project's database was restored from its backup.")
class ProjectRestoredV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation_id = fields.String(required=True)
    connection = fields.Nested(Connection, required=True)


@contract("project_removed", 1, "provisioner", "All of a project's tenant infrastructure was deleted.")
class ProjectRemovedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation_id = fields.String(required=True)


@contract("provisioning_failed", 1, "provisioner", "A saga gave up after its retries; `reason` is shown to the user.")
class ProvisioningFailedV1(Schema):
    ref = fields.String(required=True, validate=REF)
    operation = fields.String(required=True, validate=OPERATIONS)
    operation_id = fields.String(required=True)
    step = fields.String(required=True)
    reason = fields.String(required=True)
