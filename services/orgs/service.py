"""orgs nameko entrypoint: translate RPC calls to application methods. No rules here."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

from typing import Any

from nameko.rpc import rpc

from services.shared.errors import EXPECTED
from services.shared.eventstore import open_application
from services.shared.nameko_ext import ApplicationProvider

from .application import OrgsApplication


class OrgsService:
    name = "orgs"

    app: OrgsApplication = ApplicationProvider(lambda s: open_application(OrgsApplication, s))

    @rpc
    def health(self) -> dict[str, Any]:
        self.app.recorder.max_notification_id()
        return {"service": self.name, "status": "ok"}

    @rpc(expected_exceptions=EXPECTED)
    def register_user(self, email: str, password: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.app.register_user(email, password, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def issue_token(self, email: str, name: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.app.issue_token(email, name, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def authenticate_token(self, token: str) -> dict[str, Any]:
        return self.app.authenticate_token(token)

    @rpc(expected_exceptions=EXPECTED)
    def create_organization(self, user_id: str, name: str, ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.app.create_organization(user_id, name, ctx)

    @rpc(expected_exceptions=EXPECTED)
    def get_organization(self, user_id: str, slug: str) -> dict[str, Any]:
        return self.app.get_organization(user_id, slug)

    @rpc(expected_exceptions=EXPECTED)
    def list_organizations(self, user_id: str) -> list[dict[str, Any]]:
        return self.app.list_organizations(user_id)
