"""Request and response schemas of the gateway's HTTP API (marshmallow).

v1 schemas follow the Management API spec in shared/reference (field names, limits).
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate


class CreateOrganizationV1(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=256))


class OrganizationResponseV1(Schema):
    id = fields.String(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)


class V1OrganizationSlugResponse(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    plan = fields.String()
    opt_in_tags = fields.List(fields.String(), required=True)
    allowed_release_channels = fields.List(fields.String(), required=True)
