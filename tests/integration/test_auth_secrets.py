"""Secret auth settings (smtp_pass, OAuth client secrets, hook secrets, SMS keys, ...) against
the running platform: encrypted at rest like the database password, shown only to roles
allowed `projects.secrets` (masked for the others), redacted in the settings history and in
time travel, handed in clear only to the project's own APIs; and the migration that seals
values an earlier release stored in plaintext."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Callable

import psycopg

from services.shared.mail import OutboxMailer, outbox_dir
from services.shared.migrations import migrate
from services.shared.settings import Settings
from tests.integration.test_platformctl import Result, ctl  # noqa: F401 -- the fixture
from tests.integration.test_project_lifecycle import new_org
from tests.support import wait_for

SECRETS = {"smtp_pass": "smtp-Pa55word-" + uuid.uuid4().hex[:6],
           "external_github_secret": "gh-client-secret-" + uuid.uuid4().hex[:6],
           "hook_send_email_secrets": "v1,whsec_" + uuid.uuid4().hex,
           "security_captcha_secret": "captcha-" + uuid.uuid4().hex[:8],
           "sms_twilio_auth_token": "twilio-" + uuid.uuid4().hex[:8]}


def stored_events(settings: Settings) -> str:
    with psycopg.connect(settings.db_conninfo) as conn:
        rows = conn.execute("SELECT state FROM projects.projects_events").fetchall()
        snaps = conn.execute("SELECT to_regclass('projects.projects_snapshots')").fetchone()[0]
        if snaps:
            rows += conn.execute("SELECT state FROM projects.projects_snapshots").fetchall()
    return "\n".join(bytes(r[0]).decode(errors="replace") for r in rows)


def user(rpc: Any, prefix: str) -> dict[str, str]:
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
    u = rpc.orgs.register_user(email, "correct horse battery")
    return {"id": u["id"], "email": email, "token": rpc.orgs.issue_token(email, "tests")["token"]}


def member_of(rpc: Any, settings: Settings, owner: dict[str, str], slug: str, role: str) -> dict[str, str]:
    m = user(rpc, role)
    rpc.orgs.invite_member(owner["id"], slug, m["email"], role)

    def token() -> str | None:
        mails = [x for x in OutboxMailer(outbox_dir(settings)).list() if x.to == m["email"]]
        found = re.search(r"token=([\w.-]+)", mails[-1].body) if mails else None
        return found.group(1) if found else None

    rpc.orgs.accept_invitation(m["id"], wait_for(f"the invitation to {m['email']}", token, timeout=30))
    return m


def test_secret_auth_settings_are_sealed_masked_and_redacted(http: Any, rpc: Any, settings: Settings,
                                                            ctl: Callable[..., Result]) -> None:  # noqa: F811
    owner = user(rpc, "owner")
    slug = new_org(http, owner["token"], "Secret Settings")
    ref = http.post("/v1/projects", token=owner["token"], json={"name": "s", "organization_slug": slug,
                                                               "db_pass": "good-password-1"}).json()["ref"]
    r = http.request("PATCH", f"/v1/projects/{ref}/config/auth", token=owner["token"],
                     json={**SECRETS, "site_url": "https://app.example.com"})
    assert r.status_code == 200, r.text
    assert all(r.json()[k] == v for k, v in SECRETS.items())

    # At rest: not one plaintext value in the project's stored events.
    stored = stored_events(settings)
    assert "https://app.example.com" in stored  # (the settings are there ...)
    assert not [k for k, v in SECRETS.items() if v in stored], "plaintext secret in projects_events"

    # Owners and admins read them; members and read-only members see that one is set.
    assert http.get(f"/v1/projects/{ref}/config/auth", token=owner["token"]).json()["smtp_pass"] == SECRETS["smtp_pass"]
    admin = member_of(rpc, settings, owner, slug, "admin")
    assert http.get(f"/v1/projects/{ref}/config/auth", token=admin["token"]).json()["smtp_pass"] == SECRETS["smtp_pass"]
    for role in ("member", "read_only"):
        m = member_of(rpc, settings, owner, slug, role)
        r = http.get(f"/v1/projects/{ref}/config/auth", token=m["token"])
        assert r.status_code == 200, r.text
        assert all(r.json()[k] == "(secret set)" for k in SECRETS), r.json()
        assert not [v for v in SECRETS.values() if v in r.text]
        assert r.json()["site_url"] == "https://app.example.com" and r.json()["sms_twilio_account_sid"] is None
    # The mask sent back unchanged (a form that showed it) keeps the secret.
    r = http.request("PATCH", f"/v1/projects/{ref}/config/auth", token=owner["token"],
                     json={"smtp_pass": "(secret set)", "smtp_user": "mailer"})
    assert r.status_code == 200 and r.json()["smtp_pass"] == SECRETS["smtp_pass"], r.text

    # The project's own Auth API gets them in clear.
    assert rpc.projects.edge_tenant(ref)["auth"]["smtp_pass"] == SECRETS["smtp_pass"]

    # The settings history and time travel show references, never the values.
    hist = http.get(f"/platform/projects/{ref}/settings/history", token=owner["token"])
    assert hist.status_code == 200, hist.text
    assert not [v for v in SECRETS.values() if v in hist.text]
    change = next(h for h in hist.json() if h["setting"] == "auth" and "smtp_pass" in h["changes"])
    assert change["changes"]["smtp_pass"] == "(secret set)"
    st = ctl("history", "state", "project", ref)
    assert st.code == 0, st.err
    assert not [v for v in SECRETS.values() if v in st.out]
    state = json.loads(st.out.split("\n", 1)[1])
    assert state["auth"]["smtp_pass"].startswith("secret:") and state["auth_effective"]["hook_send_email_secrets"].startswith("secret:")


def test_migration_seals_secrets_an_earlier_release_stored_in_plaintext(http: Any, rpc: Any,
                                                                          settings: Settings) -> None:
    owner = user(rpc, "legacy")
    slug = new_org(http, owner["token"], "Legacy Secrets")
    ref = http.post("/v1/projects", token=owner["token"], json={"name": "l", "organization_slug": slug,
                                                               "db_pass": "good-password-1"}).json()["ref"]
    plain = "legacy-smtp-" + uuid.uuid4().hex[:8]
    r = http.request("PATCH", f"/v1/projects/{ref}/config/auth", token=owner["token"], json={"smtp_pass": plain})
    assert r.status_code == 200, r.text
    # What the previous release wrote: the value itself in the event.
    with psycopg.connect(settings.db_conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT e.originator_id, e.originator_version, e.state FROM projects.projects_events e "
                           "WHERE e.topic LIKE '%:Project.AuthConfigChanged' AND convert_from(e.state, 'UTF8') "
                           "LIKE '%smtp_pass%' ORDER BY e.notification_id DESC LIMIT 1").fetchone()
        event = json.loads(bytes(row[2]))
        event["changes"]["smtp_pass"] = plain
        conn.execute("UPDATE projects.projects_events SET state = %s WHERE originator_id = %s AND originator_version = %s",
                     (json.dumps(event).encode(), row[0], row[1]))
        conn.execute("DELETE FROM platform.migrations WHERE id = '0002_encrypt_auth_secrets'")
    assert plain in stored_events(settings)
    assert http.get(f"/v1/projects/{ref}/config/auth", token=owner["token"]).json()["smtp_pass"] == plain  # still read

    assert migrate(settings) == ["0002_encrypt_auth_secrets"]
    assert plain not in stored_events(settings)
    assert http.get(f"/v1/projects/{ref}/config/auth", token=owner["token"]).json()["smtp_pass"] == plain
    assert rpc.projects.edge_tenant(ref)["auth"]["smtp_pass"] == plain
    assert migrate(settings) == []
