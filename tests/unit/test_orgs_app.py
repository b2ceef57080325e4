"""orgs application scenarios, run twice: on eventsourcing's in-memory store and on
PostgreSQL (same code, storage chosen by environment), with fake mail and projects ports."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Iterator

import pytest

from services.orgs import permissions
from services.orgs.application import OrgsApplication
from services.orgs.bootstrap import build
from services.shared.db import bootstrap, drop_database
from services.shared.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, Unauthorized
from services.shared.mail import Mail
from tests.conftest import make_test_settings


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[Mail] = []

    def send(self, mail: Mail) -> None:
        self.sent.append(mail)

    def token_for(self, email: str) -> str:
        mail = [m for m in self.sent if m.to == email][-1]
        m = re.search(r"token=([\w.-]+)", mail.body)
        assert m, mail.body
        return m.group(1)


class FakeProjects:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count_projects(self, org_slug: str) -> int:
        return self.counts.get(org_slug, 0)


@pytest.fixture(scope="module")
def pg_settings() -> Iterator[Any]:
    s = make_test_settings("orgs")
    bootstrap(s)
    yield s
    drop_database(s)


@pytest.fixture(params=["memory", "postgres"])
def app(request: Any, pg_settings: Any) -> Iterator[OrgsApplication]:
    mailer = FakeMailer()
    a = build(pg_settings, in_memory=request.param == "memory", mailer=mailer)
    a.fake_mailer = mailer  # type: ignore[attr-defined]
    yield a
    a.close()  # its connection pools: hundreds of tests must not pile them up


_n = 0


def new_user(app: OrgsApplication, prefix: str = "u") -> dict[str, Any]:
    global _n
    _n += 1
    return app.register_user(f"{prefix}{_n}-{id(app)}@example.com", "password123", display_name=f"{prefix} {_n}")


def org_with_roles(app: OrgsApplication) -> tuple[str, dict[str, dict[str, Any]]]:
    """An org with one user per role (plus an outsider), joined through invitations."""
    owner = new_user(app, "owner")
    org = app.create_organization(owner["id"], "Matrix Org")
    users = {"owner": owner}
    for role in ("admin", "member", "read_only"):
        u = new_user(app, role)
        app.invite_member(owner["id"], org["slug"], u["email"], role)
        app.accept_invitation(u["id"], app.fake_mailer.token_for(u["email"]))  # type: ignore[attr-defined]
        users[role] = u
    users["outsider"] = new_user(app, "outsider")
    return org["slug"], users


# ---- users and tokens ------------------------------------------------------------------------

def test_register_sign_in_and_duplicates(app: OrgsApplication) -> None:
    u = app.register_user("Alice@Example.com", "password123")
    assert u["email"] == "alice@example.com"
    assert app.authenticate_password("alice@example.com", "password123")["id"] == u["id"]
    with pytest.raises(Unauthorized):
        app.authenticate_password("alice@example.com", "wrong-password")
    with pytest.raises(Unauthorized):
        app.authenticate_password("nobody@example.com", "password123")
    with pytest.raises(Conflict):
        app.register_user("alice@example.com", "password456")
    for email, pw in [("not-an-email", "password123"), ("a@b.io", "short"), (5, "password123")]:
        with pytest.raises(InvalidInput):
            app.register_user(email, pw)  # type: ignore[arg-type]
    # Stored password is a real hash, never the password.
    user = app._user(u["id"])
    assert user.password_hash.startswith("$argon2") and "password123" not in user.password_hash


def test_token_lifecycle(app: OrgsApplication) -> None:
    u = new_user(app)
    t = app.create_token(u["id"], "ci")
    assert re.fullmatch(r"sbp_[0-9a-f]{40}", t["token"])
    assert app.authenticate_token(t["token"])["id"] == u["id"]
    listed = app.list_tokens(u["id"])
    assert [x["name"] for x in listed] == ["ci"] and "token" not in listed[0]
    assert listed[0]["prefix"] == t["token"][:8] and listed[0]["last_used_at"] is not None
    # Only the hash is stored: the raw token appears in no stored event.
    events = list(app.repository.event_store.get(app._user(u["id"]).id))
    assert t["token"] not in repr(events)
    app.revoke_token(u["id"], t["id"])
    with pytest.raises(Unauthorized):
        app.authenticate_token(t["token"])
    assert app.list_tokens(u["id"]) == []
    other = new_user(app)
    t2 = app.create_token(other["id"], "x")
    with pytest.raises(NotFound):
        app.revoke_token(u["id"], t2["id"])  # not yours


def test_profile_email_change_frees_old_address(app: OrgsApplication) -> None:
    u = new_user(app)
    old = u["email"]
    app.update_profile(u["id"], {"email": "renamed-" + old, "display_name": "New Name"})
    assert app.authenticate_password("renamed-" + old, "password123")["display_name"] == "New Name"
    with pytest.raises(Unauthorized):
        app.authenticate_password(old, "password123")
    again = app.register_user(old, "password123")  # the old address is free again
    assert again["id"] != u["id"]
    with pytest.raises(Conflict):
        app.update_profile(u["id"], {"email": old})
    app.change_password(u["id"], "password123", "new-password-1")
    assert app.authenticate_password("renamed-" + old, "new-password-1")
    with pytest.raises(InvalidInput):
        app.change_password(u["id"], "wrong", "new-password-2")


# ---- organizations -----------------------------------------------------------------------------

def test_org_settings_and_switching(app: OrgsApplication) -> None:
    u = new_user(app)
    a = app.create_organization(u["id"], "First Co")
    b = app.create_organization(u["id"], "Second Co")
    assert app.get_user(u["id"])["current_organization"] == a["slug"]
    app.select_organization(u["id"], b["slug"])
    assert app.get_user(u["id"])["current_organization"] == b["slug"]
    stranger = new_user(app)
    with pytest.raises(NotFound):
        app.select_organization(stranger["id"], a["slug"])
    out = app.update_organization(u["id"], a["slug"], {"name": "First Company", "billing_email": "Bill@Example.com",
                                                       "default_region": "eu-west-1"})
    assert (out["name"], out["billing_email"], out["default_region"]) == ("First Company", "bill@example.com", "eu-west-1")
    for bad in [{"name": ""}, {"name": "x" * 257}, {"billing_email": "nope"}, {"default_region": "mars"}, {"plan": "pro"}]:
        with pytest.raises(InvalidInput):
            app.update_organization(u["id"], a["slug"], bad)
    assert app.get_organization(u["id"], a["slug"])["name"] == "First Company"


def test_delete_org_refused_while_it_has_projects(app: OrgsApplication) -> None:
    u = new_user(app)
    org = app.create_organization(u["id"], "Doomed")
    projects = FakeProjects()
    projects.counts[org["slug"]] = 2
    with pytest.raises(Conflict, match="2 project"):
        app.delete_organization(u["id"], org["slug"], projects)
    projects.counts[org["slug"]] = 0
    app.delete_organization(u["id"], org["slug"], projects)
    with pytest.raises(NotFound):
        app.get_organization(u["id"], org["slug"])
    assert org["slug"] not in app.get_user(u["id"])["organizations"]


# ---- roles -------------------------------------------------------------------------------------

def perform(app: OrgsApplication, action: str, slug: str, actor: dict[str, Any], users: dict[str, Any]) -> None:
    """Do `action` as `actor`, on a fresh target so each attempt is independent."""
    uid = actor["id"]
    projects = FakeProjects()
    if action == "org.read":
        app.get_organization(uid, slug)
    elif action == "org.update":
        app.update_organization(uid, slug, {"name": f"Renamed by {actor['email']}"})
    elif action == "org.delete":
        app.delete_organization(uid, slug, projects)
    elif action == "org.leave":
        app.leave_organization(uid, slug)
    elif action == "members.read":
        app.list_members(uid, slug)
    elif action == "members.invite":
        app.invite_member(uid, slug, f"inv-{_n}-{len(app.fake_mailer.sent)}@example.com", "member")  # type: ignore[attr-defined]
    elif action == "members.change_role":
        target = join_as(app, slug, users["owner"], "member")
        app.change_member_role(uid, slug, target["id"], "admin")
    elif action == "members.remove":
        target = join_as(app, slug, users["owner"], "member")
        app.remove_member(uid, slug, target["id"])
    elif action == "members.manage_owners":
        target = join_as(app, slug, users["owner"], "member")
        app.change_member_role(uid, slug, target["id"], "owner")
    elif action == "org.transfer_ownership":
        target = join_as(app, slug, users["owner"], "member")
        app.transfer_ownership(uid, slug, target["id"])
    elif action == "invitations.read":
        app.list_invitations(uid, slug)
    elif action == "invitations.manage":
        inv = app.invite_member(users["owner"]["id"], slug, f"rev-{len(app.fake_mailer.sent)}@example.com", "member")  # type: ignore[attr-defined]
        app.revoke_invitation(uid, slug, inv["id"])
    elif action == "audit.read":
        app.audit_log(uid, slug)
    elif action.startswith(("projects.", "billing.", "usage.", "database.")):
        # The projects and billing services (and the gateway, for usage) ask orgs this exact
        # question before acting.
        assert app.authorize(uid, slug, action)["role"] in ("owner", "admin", "member", "read_only")
    else:  # pragma: no cover
        raise AssertionError(f"matrix action {action} has no scenario")


def join_as(app: OrgsApplication, slug: str, owner: dict[str, Any], role: str) -> dict[str, Any]:
    u = new_user(app, "target")
    app.invite_member(owner["id"], slug, u["email"], role)
    app.accept_invitation(u["id"], app.fake_mailer.token_for(u["email"]))  # type: ignore[attr-defined]
    return u


@pytest.mark.parametrize("action", [a.name for a in permissions.MATRIX])
def test_permission_matrix(app: OrgsApplication, action: str) -> None:
    for role in ("owner", "admin", "member", "read_only", "outsider"):
        slug, users = org_with_roles(app)
        if action in ("org.leave", "org.transfer_ownership") and role == "owner":
            # The only owner may not leave; give the org a second owner so the permission
            # itself is what is tested (last-owner protection has its own test).
            second = join_as(app, slug, users["owner"], "member")
            app.change_member_role(users["owner"]["id"], slug, second["id"], "owner")
        expected = permissions.allowed(role if role != "outsider" else None, action)
        if expected:
            perform(app, action, slug, users[role], users)
        else:
            error = NotFound if role == "outsider" else Forbidden
            with pytest.raises(error):
                perform(app, action, slug, users[role], users)


def test_last_owner_and_transfer(app: OrgsApplication) -> None:
    slug, users = org_with_roles(app)
    owner, admin = users["owner"]["id"], users["admin"]["id"]
    with pytest.raises(Conflict, match="owner"):
        app.leave_organization(owner, slug)
    with pytest.raises(Conflict, match="owner"):
        app.change_member_role(owner, slug, owner, "admin")
    with pytest.raises(Forbidden):
        app.remove_member(admin, slug, owner)  # admins never touch owners
    app.transfer_ownership(owner, slug, admin)
    roles = {m["user_id"]: m["role"] for m in app.list_members(admin, slug)}
    assert roles[admin] == "owner" and roles[owner] == "admin"
    app.leave_organization(owner, slug)  # now allowed: no longer an owner
    with pytest.raises(NotFound):
        app.get_organization(owner, slug)
    member = users["member"]["id"]
    app.leave_organization(member, slug)
    assert slug not in app.get_user(member)["organizations"]


# ---- invitations -------------------------------------------------------------------------------

def test_invitation_accept_reuse_revoke_expire_resend(app: OrgsApplication) -> None:
    mailer: FakeMailer = app.fake_mailer  # type: ignore[attr-defined]
    owner = new_user(app)
    slug = app.create_organization(owner["id"], "Invites")["slug"]
    bob = new_user(app, "bob")
    inv = app.invite_member(owner["id"], slug, bob["email"], "admin")
    assert inv["status"] == "pending" and "token" not in inv
    token = mailer.token_for(bob["email"])
    assert app.get_invitation(token)["organization"]["slug"] == slug
    # Someone else signed in cannot use Bob's invitation.
    eve = new_user(app, "eve")
    with pytest.raises(Forbidden):
        app.accept_invitation(eve["id"], token)
    org = app.accept_invitation(bob["id"], token)
    assert org["role"] == "admin"
    with pytest.raises(Gone, match="already been used"):
        app.accept_invitation(bob["id"], token)
    with pytest.raises(Conflict):
        app.invite_member(owner["id"], slug, bob["email"], "member")  # already a member

    carol = new_user(app, "carol")
    inv = app.invite_member(owner["id"], slug, carol["email"], "member")
    app.revoke_invitation(owner["id"], slug, inv["id"])
    with pytest.raises(Gone, match="revoked"):
        app.accept_invitation(carol["id"], mailer.token_for(carol["email"]))

    dave = new_user(app, "dave")
    app.invite_member(owner["id"], slug, dave["email"], "member")
    first = mailer.token_for(dave["email"])
    real_clock = app.clock
    app.clock = lambda: real_clock() + timedelta(hours=25)  # type: ignore[method-assign]
    try:
        with pytest.raises(Gone, match="expired"):
            app.accept_invitation(dave["id"], first)
        inv_id = first.split(".")[0]
        app.resend_invitation(owner["id"], slug, inv_id)
        second = mailer.token_for(dave["email"])
        assert second != first
        with pytest.raises(NotFound):
            app.accept_invitation(dave["id"], first)  # the old link died with the resend
        assert app.accept_invitation(dave["id"], second)["role"] == "member"
    finally:
        app.clock = real_clock  # type: ignore[method-assign]
    for bad in ["", "nonsense", "0" * 32 + ".short", "f" * 32 + "." + "a" * 43]:
        with pytest.raises((InvalidInput, NotFound)):
            app.accept_invitation(dave["id"], bad)


def test_audit_log_says_who_did_what(app: OrgsApplication) -> None:
    slug, users = org_with_roles(app)
    owner = users["owner"]
    app.update_organization(owner["id"], slug, {"name": "Audited"}, ctx={"actor": owner["id"]})
    log = app.audit_log(owner["id"], slug)
    actions = [e["action"] for e in log]
    assert actions[0] == "renamed" and actions[-1] == "created"
    assert "invitation_created" in actions and "invitation_accepted" in actions
    assert log[0]["actor_email"] == owner["email"] and log[0]["details"]["name"] == "Audited"
    assert "secret_hash" not in repr(log)
    with pytest.raises(Forbidden):
        app.audit_log(users["member"]["id"], slug)


def test_other_services_list_members_by_role(app: OrgsApplication) -> None:
    # metering mails usage alerts to owners and admins: it asks without a caller.
    slug, users = org_with_roles(app)
    staff = app.list_org_members(slug, ["owner", "admin"])
    assert sorted(m["email"] for m in staff) == sorted([users["owner"]["email"], users["admin"]["email"]])
    assert len(app.list_org_members(slug)) == len(app.list_members(users["owner"]["id"], slug))
    with pytest.raises(NotFound):
        app.list_org_members("no-such-org", ["owner"])


def test_tokens_may_expire_and_say_when(app: OrgsApplication) -> None:
    from datetime import datetime, timedelta, timezone

    u = new_user(app)
    now = datetime.now(timezone.utc)
    app.clock = lambda: now  # type: ignore[method-assign]
    t = app.create_token(u["id"], "short-lived", expires_in_days=1)
    forever = app.create_token(u["id"], "forever")
    assert t["expires_at"] == (now + timedelta(days=1)).isoformat() and forever["expires_at"] is None
    assert app.authenticate_token(t["token"])["id"] == u["id"]
    listed = {x["name"]: x for x in app.list_tokens(u["id"])}
    assert listed["short-lived"]["expires_at"] == t["expires_at"] and listed["short-lived"]["last_used_at"]
    app.clock = lambda: now + timedelta(days=1, seconds=1)  # type: ignore[method-assign]
    with pytest.raises(Unauthorized, match="expired"):
        app.authenticate_token(t["token"])
    assert app.authenticate_token(forever["token"])["id"] == u["id"]
    for bad in (0, 3651, "7", True):
        with pytest.raises(InvalidInput):
            app.create_token(u["id"], "bad", expires_in_days=bad)  # type: ignore[arg-type]


def test_reads_come_from_the_read_model_kept_with_every_save(app: OrgsApplication, monkeypatch: Any) -> None:
    owner = new_user(app, "reader")
    token = app.create_token(owner["id"], "reads")["token"]
    first = app.create_organization(owner["id"], "Read One")
    second = app.create_organization(owner["id"], "Read Two")
    member = new_user(app, "joiner")
    app.invite_member(owner["id"], first["slug"], member["email"], "member")
    app.accept_invitation(member["id"], app.fake_mailer.token_for(member["email"]))  # type: ignore[attr-defined]
    # What the aggregates say, for comparison.
    views, app.views = app.views, None
    expected = (app.authenticate_token(token), app.get_user(member["id"]), app.list_organizations(owner["id"]),
                app.list_organizations(member["id"]))
    app.views = views

    def no_replay(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a read rebuilt an aggregate")

    with monkeypatch.context() as m:
        # Authentication, users and organization lists never rebuild an aggregate.
        m.setattr(app.repository, "get", no_replay)
        assert (app.authenticate_token(token), app.get_user(member["id"]), app.list_organizations(owner["id"]),
                app.list_organizations(member["id"])) == expected
        assert [o["slug"] for o in expected[2]] == [first["slug"], second["slug"]]
        assert [(o["slug"], o["role"]) for o in expected[3]] == [(first["slug"], "member")]
        with pytest.raises(NotFound):
            app.get_user("not-a-uuid")
        with pytest.raises(NotFound):
            app.list_organizations("00000000-0000-0000-0000-000000000000")
        with pytest.raises(Unauthorized):
            app.authenticate_token("sbp_" + "0" * 40)

    # Every change is in the read model at once (the same transaction on PostgreSQL).
    app.update_organization(owner["id"], second["slug"], {"name": "Renamed"})
    assert [o["name"] for o in app.list_organizations(owner["id"])] == ["Read One", "Renamed"]
    app.remove_member(owner["id"], first["slug"], member["id"])
    assert app.list_organizations(member["id"]) == []
    app.delete_organization(owner["id"], second["slug"], FakeProjects())  # type: ignore[arg-type]
    assert [o["slug"] for o in app.list_organizations(owner["id"])] == [first["slug"]]
    app.revoke_token(owner["id"], app.list_tokens(owner["id"])[0]["id"])
    with pytest.raises(Unauthorized, match="revoked"):
        app.authenticate_token(token)

    # Rebuilt from the events, it holds the same.
    before = (app.get_user(owner["id"]), app.list_organizations(owner["id"]), app.list_organizations(member["id"]))
    app.views.replace_all([])
    with pytest.raises(NotFound):
        app.get_user(owner["id"])
    assert app.rebuild_views() >= 3
    assert (app.get_user(owner["id"]), app.list_organizations(owner["id"]),
            app.list_organizations(member["id"])) == before
    with pytest.raises(Unauthorized, match="revoked"):
        app.authenticate_token(token)


# ---- sign-up without enumeration, email verification --------------------------------------------

def verify_token(mailer: FakeMailer, email: str) -> str:
    mail = [m for m in mailer.sent if m.to == email and "/verify-email?" in m.body][-1]
    m = re.search(r"token=([\w.%-]+)", mail.body)
    assert m, mail.body
    return m.group(1).replace("%2E", ".").replace("%2e", ".")


def test_sign_up_answers_the_same_for_a_taken_address_and_mails_its_owner(app: OrgsApplication) -> None:
    mailer: FakeMailer = app.fake_mailer  # type: ignore[attr-defined]
    taken = new_user(app)["email"]
    fresh = f"fresh-{id(app)}-{_n}@example.com"
    assert app.sign_up(taken, "attacker-password") is None
    assert app.sign_up(fresh, "password123", display_name="Fresh") is None
    owner_mail = [m for m in mailer.sent if m.to == taken][-1]
    assert "tried to sign up" in owner_mail.body and "/verify-email" not in owner_mail.body
    with pytest.raises(Unauthorized):
        app.authenticate_password(taken, "attacker-password")  # the account is unchanged
    # The new address: no sign-in before the link, with the same answer as a wrong password.
    with pytest.raises(Unauthorized, match="wrong email or password"):
        app.authenticate_password(fresh, "password123")
    user = app.verify_email(verify_token(mailer, fresh))
    assert user["email"] == fresh and user["email_verified"] and user["display_name"] == "Fresh"
    assert app.authenticate_password(fresh, "password123")["id"] == user["id"]


def test_verification_links_are_single_use_replaced_by_newer_ones_and_expire(app: OrgsApplication) -> None:
    mailer: FakeMailer = app.fake_mailer  # type: ignore[attr-defined]
    address = f"pending-{id(app)}-{_n}@example.com"
    app.sign_up(address, "first-password")
    first = verify_token(mailer, address)
    # Someone else signs up with the same (still unconfirmed) address: a new link, bound to
    # that sign-up's password; the first link is dead.
    app.sign_up(address, "second-password")
    second = verify_token(mailer, address)
    with pytest.raises(InvalidInput):
        app.verify_email(first)
    # Stored only hashed
    user_id = second.split(".")[0]
    events = repr(list(app.repository.event_store.get(__import__("uuid").UUID(user_id))))
    assert second.split(".")[1] not in events
    real_clock = app.clock
    app.clock = lambda: real_clock() + timedelta(hours=25)  # type: ignore[method-assign]
    try:
        with pytest.raises(Gone, match="expired"):
            app.verify_email(second)
    finally:
        app.clock = real_clock  # type: ignore[method-assign]
    user = app.verify_email(second)
    assert app.authenticate_password(address, "second-password")["id"] == user["id"]
    with pytest.raises(Unauthorized):
        app.authenticate_password(address, "first-password")
    with pytest.raises(InvalidInput):
        app.verify_email(second)  # used
    for bad in ["", "x", "0" * 32 + "." + "a" * 43, None]:
        with pytest.raises(InvalidInput):
            app.verify_email(bad)  # type: ignore[arg-type]


def test_invitations_need_a_verified_matching_address(app: OrgsApplication) -> None:
    mailer: FakeMailer = app.fake_mailer  # type: ignore[attr-defined]
    owner = new_user(app)
    slug = app.create_organization(owner["id"], "Verified only")["slug"]
    invitee = f"invitee-{id(app)}-{_n}@example.com"
    app.invite_member(owner["id"], slug, invitee, "member")
    token = mailer.token_for(invitee)
    # Someone holding another account moves it to the invited address: not confirmed, refused.
    squatter = new_user(app, "squatter")
    app.update_profile(squatter["id"], {"email": invitee})
    assert app.get_user(squatter["id"])["email_verified"] is False
    with pytest.raises(Forbidden, match="confirm your email"):
        app.accept_invitation(squatter["id"], token)
    # Once the address is confirmed from the mailbox, the invitation is accepted.
    app.verify_email(verify_token(mailer, invitee))
    assert app.accept_invitation(squatter["id"], token)["role"] == "member"
    assert app.request_email_verification(squatter["id"])["sent"] is False  # already confirmed
