"""Platform administration in the orgs and projects applications (in memory): promoting an
admin, listing everything, disabling users, refusing non-admins, admin project actions, and
the role's permissions as the dashboard asks for them."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from services.orgs import bootstrap as orgs_bootstrap
from services.orgs.application import OrgsApplication
from services.projects import bootstrap as projects_bootstrap
from services.shared.errors import Conflict, Forbidden, NotFound, Unauthorized
from services.shared.mail import Mail
from tests.conftest import make_test_settings
from tests.unit.test_projects_app import FakeBilling, FakeOrgs

PASSWORD = "correct horse battery"


class Outbox:
    def __init__(self) -> None:
        self.sent: list[Mail] = []

    def send(self, mail: Mail) -> None:
        self.sent.append(mail)


@pytest.fixture
def orgs() -> OrgsApplication:
    return orgs_bootstrap.build(make_test_settings("adm"), in_memory=True, mailer=Outbox())


def user(app: OrgsApplication, who: str) -> dict[str, Any]:
    return app.register_user(f"{who}-{uuid.uuid4().hex[:6]}@example.com", PASSWORD)


def test_promote_by_email_then_admin_sees_everything(orgs: OrgsApplication) -> None:
    ada, bob = user(orgs, "ada"), user(orgs, "bob")
    orgs.create_organization(bob["id"], "Bob Co")
    with pytest.raises(Forbidden):
        orgs.admin_stats(ada["id"])
    promoted = orgs.promote_user(ada["email"].upper(), {"actor": "platformctl"})
    assert promoted["is_admin"] is True
    assert orgs.promote_user(ada["email"])["is_admin"] is True  # again: no change, no error
    assert orgs.require_admin(ada["id"])["id"] == ada["id"]
    stats = orgs.admin_stats(ada["id"])
    assert (stats["users"], stats["admins"], stats["organizations"], stats["memberships"]) == (2, 1, 1, 1)
    assert {u["email"] for u in orgs.admin_list_users(ada["id"])} == {ada["email"], bob["email"]}
    [org] = orgs.admin_list_organizations(ada["id"])
    assert (org["slug"], org["members"], org["owners"]) == ("bob-co", 1, [bob["email"]])
    with pytest.raises(NotFound):
        orgs.promote_user("nobody@example.com")


def test_non_admins_are_refused_every_admin_call(orgs: OrgsApplication) -> None:
    bob, carl = user(orgs, "bob"), user(orgs, "carl")
    for call in (lambda: orgs.admin_list_users(bob["id"]), lambda: orgs.admin_list_organizations(bob["id"]),
                 lambda: orgs.admin_set_admin(bob["id"], bob["id"], True),
                 lambda: orgs.admin_set_disabled(bob["id"], carl["id"], True),
                 lambda: orgs.require_admin(str(uuid.uuid4()))):
        with pytest.raises(Forbidden):
            call()
    assert orgs.get_user(bob["id"])["is_admin"] is False


def test_disable_ends_sign_in_and_tokens_until_enabled(orgs: OrgsApplication) -> None:
    ada, bob = user(orgs, "ada"), user(orgs, "bob")
    orgs.promote_user(ada["email"])
    token = orgs.create_token(bob["id"], "ci")["token"]
    assert orgs.admin_set_disabled(ada["id"], bob["id"], True)["disabled"] is True
    assert orgs.get_user(bob["id"])["disabled"] is True  # the gateway ends sessions on this
    with pytest.raises(Unauthorized):
        orgs.authenticate_password(bob["email"], PASSWORD)
    with pytest.raises(Unauthorized):
        orgs.authenticate_token(token)
    orgs.admin_set_disabled(ada["id"], bob["id"], False)
    assert orgs.authenticate_password(bob["email"], PASSWORD)["id"] == bob["id"]
    # An admin cannot lock themselves out, and a disabled admin is no admin.
    with pytest.raises(Conflict):
        orgs.admin_set_disabled(ada["id"], ada["id"], True)
    with pytest.raises(Conflict):
        orgs.admin_set_admin(ada["id"], ada["id"], False)
    orgs.admin_set_admin(ada["id"], bob["id"], True)
    orgs.admin_set_disabled(ada["id"], bob["id"], True)
    with pytest.raises(Forbidden):
        orgs.require_admin(bob["id"])


def test_admin_events_are_recorded_in_order(orgs: OrgsApplication) -> None:
    ada, bob = user(orgs, "ada"), user(orgs, "bob")
    orgs.promote_user(ada["email"])
    orgs.admin_set_disabled(ada["id"], bob["id"], True)
    orgs.admin_set_disabled(ada["id"], bob["id"], False)
    orgs.admin_set_admin(ada["id"], bob["id"], True)
    orgs.admin_set_admin(ada["id"], bob["id"], False)
    names = [type(e).__name__ for e in orgs.repository.event_store.get(uuid.UUID(bob["id"]))]
    assert names[-4:] == ["Disabled", "Enabled", "PromotedToAdmin", "DemotedFromAdmin"]


def test_permissions_in_an_organization_follow_the_role_matrix(orgs: OrgsApplication) -> None:
    owner, member, stranger = user(orgs, "own"), user(orgs, "mem"), user(orgs, "str")
    slug = orgs.create_organization(owner["id"], "Matrix")["slug"]
    orgs.invite_member(owner["id"], slug, member["email"], "member")
    token = re.search(r"token=([\w.-]+)", orgs.mailer.sent[-1].body).group(1)  # type: ignore[attr-defined]
    orgs.accept_invitation(member["id"], token)
    mine = orgs.permissions_in(owner["id"], slug)
    theirs = orgs.permissions_in(member["id"], slug)
    assert mine["role"] == "owner" and "org.delete" in mine["actions"] and "projects.secrets" in mine["actions"]
    assert theirs["role"] == "member" and "projects.read" in theirs["actions"]
    assert not {"projects.manage", "projects.secrets", "members.invite"} & set(theirs["actions"])
    with pytest.raises(NotFound):
        orgs.permissions_in(stranger["id"], slug)


class AdminOrgs(FakeOrgs):
    def __init__(self, admins: set[str]) -> None:
        super().__init__()
        self.admins = admins

    def require_admin(self, user_id: str) -> dict[str, Any]:
        if user_id not in self.admins:
            raise Forbidden("platform admins only")
        return {"id": user_id}


def test_admins_list_and_act_on_any_project() -> None:
    app = projects_bootstrap.build(make_test_settings("adm"), in_memory=True)
    owner, admin, nobody = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    orgs, billing = AdminOrgs({admin}), FakeBilling()
    orgs.roles[(owner, "acme")] = "owner"
    ref = app.create_project(owner, {"name": "App", "organization_slug": "acme", "db_pass": "tenant-password-1"},
                             orgs, billing)["ref"]
    with pytest.raises(Forbidden):
        app.admin_list_projects(nobody, orgs)
    with pytest.raises(Forbidden):
        app.admin_project_action(nobody, ref, "delete", orgs, billing)
    [listed] = app.admin_list_projects(admin, orgs)
    assert (listed["ref"], listed["organization_slug"], listed["status"]) == (ref, "acme", "COMING_UP")
    # The domain's rules still hold for admins: a project coming up cannot be paused.
    with pytest.raises(Conflict):
        app.admin_project_action(admin, ref, "pause", orgs, billing)
    project = app._project(ref)
    app.apply_completion({"event_id": str(uuid.uuid4()), "payload": {
        "ref": ref, "operation_id": project.operation_id,
        "connection": {"db_host": "h", "db_port": 5432, "db_name": ref, "db_user": "u", "bucket": "b"}}}, "create")
    assert app.admin_project_action(admin, ref, "pause", orgs, billing)["status"] == "PAUSING"
    assert app.admin_list_projects(admin, orgs)[0]["status"] == "PAUSING"
