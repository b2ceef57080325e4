"""orgs nameko entrypoint: translate RPC calls to application methods. No rules here."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, history_rpc, TimedRpcProxy

from .adapters import ProjectsViaRpc
from .application import OrgsApplication
from .bootstrap import build

Ctx = dict[str, Any] | None


class OrgsService:
    name = "orgs"
    history = history_rpc()  # time travel over this service's store (admin panel)

    app: OrgsApplication = ApplicationProvider(build)
    projects = TimedRpcProxy("projects")

    @rpc
    def health(self) -> dict[str, Any]:
        self.app.recorder.max_notification_id()
        return {"service": self.name, "status": "ok"}

    # users
    @rpc(expected_exceptions=EXPECTED)
    def register_user(self, email: str, password: str, ctx: Ctx = None, display_name: str = "") -> dict[str, Any]:
        return self.app.register_user(email, password, ctx, display_name=display_name)

    @rpc(expected_exceptions=EXPECTED)
    def sign_up(self, email: str, password: str, ctx: Ctx = None, display_name: str = "",
                next_path: str | None = None) -> None:
        self.app.sign_up(email, password, ctx, display_name, next_path)

    @rpc(expected_exceptions=EXPECTED)
    def verify_email(self, token: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.verify_email(token, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def request_email_verification(self, user_id: str, ctx: Ctx = None, next_path: str | None = None) -> dict[str, Any]:
        return self.app.request_email_verification(user_id, ctx, next_path)

    @rpc(expected_exceptions=EXPECTED)
    def authenticate_password(self, email: str, password: str) -> dict[str, Any]:
        return self.app.authenticate_password(email, password)

    @rpc(expected_exceptions=EXPECTED)
    def get_user(self, user_id: str) -> dict[str, Any]:
        return self.app.get_user(user_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_profile(self, user_id: str, changes: dict[str, Any], ctx: Ctx = None) -> dict[str, Any]:
        return self.app.update_profile(user_id, changes, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def change_password(self, user_id: str, current_password: str, new_password: str, ctx: Ctx = None,
                        revoke_tokens: bool = False) -> dict[str, Any]:
        return self.app.change_password(user_id, current_password, new_password, ctx, revoke_tokens)

    @rpc(expected_exceptions=EXPECTED)
    def select_organization(self, user_id: str, slug: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.select_organization(user_id, slug, ctx)

    # tokens
    @rpc(expected_exceptions=EXPECTED)
    def issue_token(self, email: str, name: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.issue_token(email, name, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def create_token(self, user_id: str, name: str, ctx: Ctx = None,
                     expires_in_days: int | None = None) -> dict[str, Any]:
        return self.app.create_token(user_id, name, ctx, expires_in_days)

    @rpc(expected_exceptions=EXPECTED)
    def list_tokens(self, user_id: str) -> list[dict[str, Any]]:
        return self.app.list_tokens(user_id)

    @rpc(expected_exceptions=EXPECTED)
    def revoke_token(self, user_id: str, token_id: str, ctx: Ctx = None) -> None:
        self.app.revoke_token(user_id, token_id, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def authenticate_token(self, token: str) -> dict[str, Any]:
        return self.app.authenticate_token(token)

    # organizations
    @rpc(expected_exceptions=EXPECTED)
    def create_organization(self, user_id: str, name: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.create_organization(user_id, name, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def get_organization(self, user_id: str, slug: str) -> dict[str, Any]:
        return self.app.get_organization(user_id, slug)

    @rpc(expected_exceptions=EXPECTED)
    def list_organizations(self, user_id: str) -> list[dict[str, Any]]:
        return self.app.list_organizations(user_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_organization(self, user_id: str, slug: str, changes: dict[str, Any], ctx: Ctx = None) -> dict[str, Any]:
        return self.app.update_organization(user_id, slug, changes, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def delete_organization(self, user_id: str, slug: str, ctx: Ctx = None) -> None:
        self.app.delete_organization(user_id, slug, ProjectsViaRpc(self.projects), ctx)

    @rpc(expected_exceptions=EXPECTED)
    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
        return self.app.authorize(user_id, slug, action)

    # members
    @rpc(expected_exceptions=EXPECTED)
    def list_members(self, user_id: str, slug: str) -> list[dict[str, Any]]:
        return self.app.list_members(user_id, slug)

    @rpc(expected_exceptions=EXPECTED)
    def list_org_members(self, slug: str, roles: list[str] | None = None) -> list[dict[str, Any]]:
        return self.app.list_org_members(slug, roles)

    @rpc(expected_exceptions=EXPECTED)
    def change_member_role(self, user_id: str, slug: str, member_id: str, role: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.change_member_role(user_id, slug, member_id, role, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def remove_member(self, user_id: str, slug: str, member_id: str, ctx: Ctx = None) -> None:
        self.app.remove_member(user_id, slug, member_id, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def leave_organization(self, user_id: str, slug: str, ctx: Ctx = None) -> None:
        self.app.leave_organization(user_id, slug, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def transfer_ownership(self, user_id: str, slug: str, to_user_id: str, ctx: Ctx = None) -> None:
        self.app.transfer_ownership(user_id, slug, to_user_id, ctx)

    # invitations
    @rpc(expected_exceptions=EXPECTED)
    def invite_member(self, user_id: str, slug: str, email: str, role: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.invite_member(user_id, slug, email, role, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def list_invitations(self, user_id: str, slug: str) -> list[dict[str, Any]]:
        return self.app.list_invitations(user_id, slug)

    @rpc(expected_exceptions=EXPECTED)
    def resend_invitation(self, user_id: str, slug: str, invitation_id: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.resend_invitation(user_id, slug, invitation_id, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def revoke_invitation(self, user_id: str, slug: str, invitation_id: str, ctx: Ctx = None) -> None:
        self.app.revoke_invitation(user_id, slug, invitation_id, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def get_invitation(self, token: str) -> dict[str, Any]:
        return self.app.get_invitation(token)

    @rpc(expected_exceptions=EXPECTED)
    def accept_invitation(self, user_id: str, token: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.accept_invitation(user_id, token, ctx)

    # audit
    @rpc(expected_exceptions=EXPECTED)
    def audit_log(self, user_id: str, slug: str, limit: int = 100) -> list[dict[str, Any]]:
        return self.app.audit_log(user_id, slug, limit)

    # platform administration
    @rpc(expected_exceptions=EXPECTED)
    def permissions_in(self, user_id: str, slug: str) -> dict[str, Any]:
        return self.app.permissions_in(user_id, slug)

    @rpc(expected_exceptions=EXPECTED)
    def promote_user(self, email: str, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.promote_user(email, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def require_admin(self, user_id: str) -> dict[str, Any]:
        return self.app.require_admin(user_id)

    @rpc(expected_exceptions=EXPECTED)
    def admin_stats(self, user_id: str) -> dict[str, Any]:
        return self.app.admin_stats(user_id)

    @rpc(expected_exceptions=EXPECTED)
    def admin_list_users(self, user_id: str) -> list[dict[str, Any]]:
        return self.app.admin_list_users(user_id)

    @rpc(expected_exceptions=EXPECTED)
    def admin_list_organizations(self, user_id: str) -> list[dict[str, Any]]:
        return self.app.admin_list_organizations(user_id)

    @rpc(expected_exceptions=EXPECTED)
    def admin_set_admin(self, user_id: str, target_id: str, is_admin: bool, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.admin_set_admin(user_id, target_id, is_admin, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def admin_set_disabled(self, user_id: str, target_id: str, disabled: bool, ctx: Ctx = None) -> dict[str, Any]:
        return self.app.admin_set_disabled(user_id, target_id, disabled, ctx)
