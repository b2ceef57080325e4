"""Contracts published by the orgs service (exchange `orgs.events`)."""

from marshmallow import Schema, fields, validate

from .registry import contract

SLUG = validate.Regexp(r"^[\w-]+$")


@contract("organization_created", 1, "orgs", "An organization was created; its creator is its first owner.")
class OrganizationCreatedV1(Schema):
    slug = fields.String(required=True, validate=SLUG)
    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    owner_user_id = fields.String(required=True)


@contract("user_signed_up", 1, "orgs", "A user account was created.")
class UserSignedUpV1(Schema):
    user_id = fields.String(required=True)
    email = fields.Email(required=True)
