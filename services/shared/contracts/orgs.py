"""Contracts published by the orgs service (exchange `orgs.events`)."""

from marshmallow import Schema, fields, validate

from .registry import contract

SLUG = validate.Regexp(r"^[\w-]+$")
ROLES = ("owner", "admin", "member", "read_only")


@contract("organization_created", 1, "orgs", "An organization was created; its creator is its first owner.")
class OrganizationCreatedV1(Schema):
    slug = fields.String(required=True, validate=SLUG)
    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    owner_user_id = fields.String(required=True)


@contract("user_signed_up", 1, "orgs", "A user account was created.")
class UserSignedUpV1(Schema):
    user_id = fields.String(required=True)
    email = fields.Email(required=True)


@contract("organization_updated", 1, "orgs", "An organization's name or settings changed; `changes` holds the new values.")
class OrganizationUpdatedV1(Schema):
    slug = fields.String(required=True, validate=SLUG)
    changes = fields.Dict(keys=fields.String(validate=validate.OneOf(["name", "billing_email", "default_region"])),
                          required=True)


@contract("organization_deleted", 1, "orgs", "An organization was deleted by an owner (it had no projects left).")
class OrganizationDeletedV1(Schema):
    slug = fields.String(required=True, validate=SLUG)


@contract("member_added", 1, "orgs", "Someone joined an organization (by accepting an invitation).")
class MemberAddedV1(Schema):
    slug = fields.String(required=True, validate=SLUG)
    user_id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


@contract("member_role_changed", 1, "orgs", "A member's role changed (including by an ownership transfer).")
class MemberRoleChangedV1(Schema):
    slug = fields.String(required=True, validate=SLUG)
    user_id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


@contract("member_removed", 1, "orgs", "A member left or was removed from an organization.")
class MemberRemovedV1(Schema):
    slug = fields.String(required=True, validate=SLUG)
    user_id = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(["left", "removed"]))


@contract("ownership_transferred", 1, "orgs", "An owner made another member owner and became admin.")
class OwnershipTransferredV1(Schema):
    slug = fields.String(required=True, validate=SLUG)
    from_user_id = fields.String(required=True)
    to_user_id = fields.String(required=True)


@contract("user_admin_changed", 1, "orgs",
          "A user became a platform admin (is_admin true) or stopped being one; set by operators and admins.")
class UserAdminChangedV1(Schema):
    user_id = fields.String(required=True)
    is_admin = fields.Boolean(required=True)


@contract("user_access_changed", 1, "orgs",
          "A platform admin disabled a user's account (no sign-in, sessions and tokens refused) or enabled it again.")
class UserAccessChangedV1(Schema):
    user_id = fields.String(required=True)
    disabled = fields.Boolean(required=True)


@contract("token_revoked", 1, "orgs",
          "A user's personal access token was revoked: it is refused from now on (gateways drop it from their "
          "authentication cache).")
class TokenRevokedV1(Schema):
    user_id = fields.String(required=True)
    token_id = fields.String(required=True)
