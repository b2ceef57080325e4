"""Request and response schemas of the gateway's HTTP API (marshmallow). The gateway's
OpenAPI document is generated from these (gateway/openapi.py).

v1 schemas follow the Management API spec in shared/reference (names, limits, required).
Request schemas refuse unknown fields.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

ROLE = validate.OneOf(["owner", "admin", "member"])
NAME = validate.Length(min=1, max=256)


class Strict(Schema):
    class Meta:
        unknown = RAISE


# ---- v1 (Management API) ---------------------------------------------------------------------

class CreateOrganizationV1(Strict):
    name = fields.String(required=True, validate=NAME)


class OrganizationResponseV1(Schema):
    id = fields.String(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)


class V1OrganizationSlugResponse(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    plan = fields.String(validate=validate.OneOf(["free", "pro", "team", "enterprise", "platform"]))
    opt_in_tags = fields.List(fields.String(), required=True)
    allowed_release_channels = fields.List(fields.String(), required=True)


class V1OrganizationMemberResponse(Schema):
    user_id = fields.String(required=True)
    user_name = fields.String(required=True)
    email = fields.String()
    role_name = fields.String(required=True)
    mfa_enabled = fields.Boolean(required=True)


# ---- platform: auth and profile ----------------------------------------------------------------

class SignUp(Strict):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, validate=validate.Length(min=8, max=256))
    display_name = fields.String(load_default="", validate=validate.Length(max=256))


class SignIn(Strict):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=256))


class User(Schema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    display_name = fields.String(required=True)
    current_organization = fields.String(allow_none=True, required=True)
    organizations = fields.List(fields.String(), required=True)
    is_admin = fields.Boolean(required=True)


class SessionInfo(Schema):
    user = fields.Nested(User, required=True)
    csrf_token = fields.String(metadata={"description": "Send as X-CSRF-Token on state-changing requests made with the session cookie"})


class ProfileUpdate(Strict):
    display_name = fields.String(validate=validate.Length(max=256))
    email = fields.Email(validate=validate.Length(max=254))


class PasswordChange(Strict):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=256))
    new_password = fields.String(required=True, validate=validate.Length(min=8, max=256))


class SelectOrganization(Strict):
    slug = fields.String(required=True, validate=validate.Regexp(r"^[\w-]+$"))


class TokenCreate(Strict):
    name = fields.String(required=True, validate=NAME)


class Token(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    prefix = fields.String(required=True, metadata={"description": "First characters of the token, to recognise it"})
    created_at = fields.String(required=True)
    last_used_at = fields.String(allow_none=True, required=True)


class TokenCreated(Token):
    token = fields.String(required=True, metadata={"description": "The token itself: shown once, never again"})


# ---- platform: organizations --------------------------------------------------------------------

class Organization(Schema):
    id = fields.String(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)
    billing_email = fields.String(allow_none=True)
    default_region = fields.String(allow_none=True)
    created_at = fields.String()
    role = fields.String(allow_none=True, metadata={"description": "Your role in it"})


class OrganizationUpdate(Strict):
    name = fields.String(validate=NAME)
    billing_email = fields.Email(allow_none=True)
    default_region = fields.String(allow_none=True, validate=validate.Regexp(r"^[a-z]{2}-[a-z]+-\d$"))


class Member(Schema):
    user_id = fields.String(required=True)
    email = fields.String(required=True)
    display_name = fields.String(required=True)
    role = fields.String(required=True, validate=ROLE)


class RoleChange(Strict):
    role = fields.String(required=True, validate=ROLE)


class TransferOwnership(Strict):
    user_id = fields.String(required=True)


class InvitationCreate(Strict):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    role = fields.String(required=True, validate=ROLE)


class Invitation(Schema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    role = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["pending", "accepted", "revoked", "expired"]))
    expires_at = fields.String(required=True)


class OrgRef(Schema):
    slug = fields.String(required=True)
    name = fields.String(required=True)


class InvitationPreview(Schema):
    organization = fields.Nested(OrgRef, required=True)
    email = fields.String(required=True)
    role = fields.String(required=True)
    status = fields.String(required=True)
    expires_at = fields.String(required=True)


class InvitationAccept(Strict):
    token = fields.String(required=True, validate=validate.Length(min=1, max=512))


class AuditEntry(Schema):
    at = fields.String(required=True)
    action = fields.String(required=True)
    version = fields.Integer(required=True)
    actor_id = fields.String(allow_none=True, required=True)
    actor_email = fields.String(allow_none=True, required=True)
    details = fields.Dict(required=True)


class Error(Schema):
    message = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "Messages per request field, when the input was invalid"})
