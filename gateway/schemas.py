"""Request and response schemas of the gateway's HTTP API (marshmallow). The gateway's
OpenAPI document is generated from these (gateway/openapi.py).

v1 schemas follow the Management API spec in shared/reference (names, limits, required).
Request schemas refuse unknown fields.
"""

from __future__ import annotations

from marshmallow import INCLUDE, RAISE, Schema, fields, validate

ROLE = validate.OneOf(["owner", "admin", "member", "read_only"])
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

NEXT_PATH = validate.Regexp(r"^/(?![/\\])[\x21-\x7e]{0,500}$", error="must be a path on this site, like /org/acme")


class SignUp(Strict):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, validate=validate.Length(min=8, max=256))
    display_name = fields.String(load_default="", validate=validate.Length(max=256))
    next = fields.String(load_default=None, allow_none=True, validate=NEXT_PATH, metadata={
        "description": "Where the dashboard goes after the address is confirmed (a path on this site)"})


class SignUpAccepted(Schema):
    message = fields.String(required=True)
    email = fields.String(required=True, metadata={"description": "Where the mail went"})


class VerifyEmail(Strict):
    token = fields.String(required=True, validate=validate.Length(min=1, max=200))


class VerificationRequest(Strict):
    next = fields.String(load_default=None, allow_none=True, validate=NEXT_PATH)


class VerificationSent(Schema):
    email = fields.String(required=True)
    sent = fields.Boolean(required=True, metadata={"description": "false: the address is confirmed already"})


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
    email_verified = fields.Boolean(dump_default=False, metadata={
        "description": "Whether you confirmed the address from the link we mailed (invitations need it)"})


class StudioInfo(Schema):
    ref = fields.String(required=True, metadata={"description": "The one project this Studio session is for"})
    dashboard_url = fields.String(required=True, metadata={"description": "Where the platform's own pages are"})


class SessionInfo(Schema):
    user = fields.Nested(User, required=True)
    csrf_token = fields.String(metadata={"description": "Send as X-CSRF-Token on state-changing requests made with the session cookie"})
    studio = fields.Nested(StudioInfo, metadata={"description": "On the Studio origin only (docs/studio.md)"})
    studio_embedded = fields.Boolean(dump_default=False, metadata={
        "description": "Studio is a project's own Supabase Studio behind the bridge (kubernetes driver), "
                       "embedded in the dashboard's Studio page; otherwise the dashboard's database pages"})


class ProfileUpdate(Strict):
    display_name = fields.String(validate=validate.Length(max=256))
    email = fields.Email(validate=validate.Length(max=254))


class PasswordChange(Strict):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=256))
    new_password = fields.String(required=True, validate=validate.Length(min=8, max=256))
    revoke_tokens = fields.Boolean(load_default=False, metadata={
        "description": "Also revoke every personal access token of yours (refused at once by every gateway)"})


class SelectOrganization(Strict):
    slug = fields.String(required=True, validate=validate.Regexp(r"^[\w-]+$"))


class TokenCreate(Strict):
    name = fields.String(required=True, validate=NAME)
    expires_in_days = fields.Integer(load_default=None, allow_none=True, strict=True,
                                     validate=validate.Range(min=1, max=3650),
                                     metadata={"description": "Stops working after this many days (default: never)"})


class Token(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    prefix = fields.String(required=True, metadata={"description": "First characters of the token, to recognise it"})
    created_at = fields.String(required=True)
    last_used_at = fields.String(allow_none=True, required=True)
    expires_at = fields.String(allow_none=True, dump_default=None, metadata={"description": "When it stops working (null: never)"})


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


# ---- v1: projects -----------------------------------------------------------------------------

REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-east-1", "ap-southeast-1", "ap-northeast-1",
           "ap-northeast-2", "ap-southeast-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1", "eu-central-1",
           "eu-central-2", "ca-central-1", "ap-south-1", "sa-east-1"]
STATUSES = ["INACTIVE", "ACTIVE_HEALTHY", "ACTIVE_UNHEALTHY", "COMING_UP", "UNKNOWN", "GOING_DOWN", "INIT_FAILED",
            "REMOVED", "RESTORING", "UPGRADING", "PAUSING", "RESTORE_FAILED", "RESTARTING", "PAUSE_FAILED", "RESIZING"]


class V1CreateProjectBody(Strict):
    db_pass = fields.String(required=True, validate=validate.Length(min=8, max=256),
                            metadata={"description": "Password of the tenant's postgres login"})
    name = fields.String(required=True, validate=NAME)
    organization_id = fields.String(metadata={"description": "Deprecated: use organization_slug"})
    organization_slug = fields.String(validate=validate.Regexp(r"^[\w-]+$"))
    plan = fields.String(validate=validate.OneOf(["free", "pro"]), metadata={"description": "Ignored: plans are per organization"})
    region = fields.String(validate=validate.OneOf(REGIONS))
    region_selection = fields.Dict()
    kps_enabled = fields.Boolean()
    desired_instance_size = fields.String()
    template_url = fields.Url()


class Database(Schema):
    host = fields.String(required=True)
    version = fields.String(required=True)
    postgres_engine = fields.String(required=True)
    release_channel = fields.String(required=True)


class V1ProjectResponse(Schema):
    id = fields.String(required=True)
    ref = fields.String(required=True)
    organization_id = fields.String(required=True)
    organization_slug = fields.String(required=True)
    name = fields.String(required=True)
    region = fields.String(required=True)
    created_at = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))


class V1ProjectWithDatabaseResponse(V1ProjectResponse):
    database = fields.Nested(Database, required=True)


class Progress(Schema):
    operation = fields.String(required=True)
    step = fields.String(allow_none=True, required=True)
    step_index = fields.Integer(required=True)
    total_steps = fields.Integer(required=True)
    reason = fields.String(allow_none=True, required=True, metadata={"description": "Why the last operation failed"})


class Connection(Schema):
    db_host = fields.String(required=True)
    db_port = fields.Integer(required=True)
    db_name = fields.String(required=True)
    db_user = fields.String(required=True)
    bucket = fields.String(required=True)
    api_url = fields.String(required=True, metadata={
        "description": "The project's API URL on the project edge (supabase-js `url`); edge functions answer at "
                       "<api_url>/functions/v1/<slug>"})


class SupavisorConfigResponse(Schema):
    identifier = fields.String(required=True)
    database_type = fields.String(required=True, validate=validate.OneOf(["PRIMARY", "READ_REPLICA"]))
    is_using_scram_auth = fields.Boolean(required=True)
    db_user = fields.String(required=True)
    db_host = fields.String(required=True)
    db_port = fields.Integer(required=True)
    db_name = fields.String(required=True)
    connection_string = fields.String(required=True)
    connectionString = fields.String(required=True, metadata={"description": "Use connection_string instead"})
    default_pool_size = fields.Integer(required=True, allow_none=True)
    max_client_conn = fields.Integer(required=True, allow_none=True)
    pool_mode = fields.String(required=True, validate=validate.OneOf(["transaction", "session"]))


class ProjectDetail(V1ProjectWithDatabaseResponse):
    progress = fields.Nested(Progress, required=True)
    connection = fields.Nested(Connection, allow_none=True, required=True)


class V1ProjectRefResponse(Schema):
    id = fields.Integer(required=True)
    ref = fields.String(required=True)
    name = fields.String(required=True)


class ApiKeyResponse(Schema):
    name = fields.String(required=True)
    api_key = fields.String(allow_none=True)
    id = fields.String(allow_none=True)
    type = fields.String(allow_none=True, validate=validate.OneOf(["legacy", "publishable", "secret"]))
    prefix = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    hash = fields.String(allow_none=True)
    secret_jwt_template = fields.Dict(allow_none=True)
    inserted_at = fields.String(allow_none=True)
    updated_at = fields.String(allow_none=True)


class V1ServiceHealthResponse(Schema):
    name = fields.String(required=True)
    healthy = fields.Boolean(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["COMING_UP", "ACTIVE_HEALTHY", "UNHEALTHY"]))
    error = fields.String()


class V1PostgrestConfigResponse(Schema):
    db_schema = fields.String(required=True)
    max_rows = fields.Integer(required=True)
    db_extra_search_path = fields.String(required=True)
    db_pool = fields.Integer(allow_none=True, required=True)


class PostgrestConfigWithJWTSecretResponse(V1PostgrestConfigResponse):
    jwt_secret = fields.String()


class V1UpdatePostgrestConfigBody(Strict):
    db_extra_search_path = fields.String()
    db_schema = fields.String()
    max_rows = fields.Integer(strict=True, validate=validate.Range(min=0, max=1_000_000))
    db_pool = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000))


class AuthConfig(Schema):
    """All of GoTrue's settings as v1 names them (see services/projects/auth_config_fields.py)."""

    class Meta:
        unknown = INCLUDE


class SettingChange(Schema):
    at = fields.String(required=True)
    setting = fields.String(required=True, validate=validate.OneOf(["postgrest", "auth", "jwt_secret", "rollback"]))
    changes = fields.Dict(required=True, metadata={"description": "What changed; secrets as '(secret set)'"})
    actor_id = fields.String(allow_none=True, required=True)
    version = fields.Integer(required=True, metadata={"description": "The project's version after this change"})
    restores_version = fields.Integer(allow_none=True, metadata={"description": "A rollback: the version it restored"})


class SettingsRollback(Schema):
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1),
                             metadata={"description": "The project version (from the settings history) to restore"})


class SettingsRolledBack(Schema):
    restored_version = fields.Integer(required=True)
    version = fields.Integer(required=True, metadata={"description": "The project's version after the rollback"})
    postgrest = fields.Dict(required=True)
    auth = fields.Dict(required=True, metadata={"description": "Secrets as '(secret set)'"})
