"""The dashboard, step by step, as its users would go through it in Chromium: sign up, create
an organization, invite a member (who accepts from the mail's link), create a project and
watch it come up, reveal and copy keys, rotate the JWT secret, edge functions, usage charts,
upgrade the plan, a member without rights (buttons disabled, the server refuses anyway), the
admin panel, pausing and restoring with their progress, keyboard use and a narrow screen.

The steps share one story (fixture `story`) and run in order; `-x` stops at the first failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from typing import Any

from playwright.sync_api import expect

from services.shared.mail import OutboxMailer, outbox_dir
from services.shared.settings import Settings
from tests.support import wait_for

from .fixtures import ROOT, Person, slug_of

PASSWORD = "correct horse battery staple"
READY_TIMEOUT_MS = 90_000


def email(who: str) -> str:
    return f"{who}-{uuid.uuid4().hex[:8]}@example.com"


def sign_up(p: Person, address: str, name: str) -> None:
    p.page.fill("input[name=email]", address)
    p.page.fill("input[name=display_name]", name)
    p.page.fill("input[name=password]", PASSWORD)
    p.page.click("form button[type=submit]")


def mailed_link(settings: Settings, to: str, path: str) -> str:
    def link() -> str | None:
        for mail in reversed([m for m in OutboxMailer(outbox_dir(settings)).list() if m.to == to]):
            m = re.search(r"(http\S+" + re.escape(path) + r"\?\S+)", mail.body)
            if m:
                return m.group(1)
        return None

    return wait_for(f"a mail to {to} with a {path} link", link, timeout=30, interval=0.2)


def confirm_from_mail(p: Person, settings: Settings, address: str) -> None:
    """After sign-up: the page says to check the mail; the mailed link signs the person in."""
    expect(p.page.locator("h1")).to_have_text("Check your mail")
    expect(p.page.locator(".notice")).to_contain_text(address)
    p.page.goto(mailed_link(settings, address, "/verify-email"))


def invitation_link(settings: Settings, to: str) -> str:
    def link() -> str | None:
        mails = [m for m in OutboxMailer(outbox_dir(settings)).list() if m.to == to]
        if not mails:
            return None
        m = re.search(r"(http\S+/invitations/accept\?token=[\w.-]+)", mails[-1].body)
        assert m, mails[-1].body
        return m.group(1)

    return wait_for(f"an invitation mail to {to}", link, timeout=30, interval=0.2)


def clipboard(page: Any) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


# ---- 1. sign up, create an organization -------------------------------------------------------

def test_sign_up_shows_server_field_errors_then_signs_in(owner: Person, settings: Settings,
                                                         story: dict[str, Any]) -> None:
    page = owner.go("/")
    page.wait_for_url("**/sign-in**")
    owner.titled("Sign in")
    owner.shot("01-sign-in")
    page.click("text=Create an account")
    page.wait_for_url("**/sign-up**")
    owner.titled("Sign up")
    story["owner"] = email("owner")
    page.fill("input[name=email]", story["owner"])
    page.fill("input[name=password]", "short")  # the server wants 8 characters
    page.click("form button[type=submit]")
    error = page.locator("[data-error-for=password]")
    expect(error).to_contain_text("8")
    expect(page.locator("input[name=password]")).to_have_attribute("aria-invalid", "true")
    owner.shot("02-sign-up-field-error")
    page.fill("input[name=display_name]", "Olive Owner")
    page.fill("input[name=password]", PASSWORD)
    expect(page.locator(".strength-wrap p")).to_contain_text("Strength")
    page.click("form button[type=submit]")
    confirm_from_mail(owner, settings, story["owner"])
    page.wait_for_url("**/new-org")
    owner.titled("New organization")


def test_create_organization(owner: Person, story: dict[str, Any]) -> None:
    page = owner.page
    page.fill("input[name=name]", "Acme Browser")
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r".*/org/[\w-]+$"))
    story["slug"] = slug_of(page.url)
    expect(page.locator("#org-select")).to_have_value(story["slug"])
    expect(page.locator("h1")).to_have_text("Projects")
    owner.titled("Projects", "Acme Browser")
    owner.shot("03-projects-empty")


# ---- 2. team: invite, accept from the mail link ----------------------------------------------

def test_invite_a_member_who_accepts_from_the_mail_link(owner: Person, member: Person, settings: Settings,
                                                       story: dict[str, Any]) -> None:
    slug = story["slug"]
    page = owner.go(f"/org/{slug}/team")
    owner.titled("Team")
    story["member"] = email("member")
    invite = page.locator("form[aria-label='Invite a member']")
    invite.locator("input[name=email]").fill("not-an-email")
    invite.locator("button[type=submit]").click()
    expect(invite.locator("[data-error-for=email]")).not_to_be_empty()  # the server's message, beside the field
    invite.locator("input[name=email]").fill(story["member"])
    invite.locator("select[name=role]").select_option("member")
    invite.locator("button[type=submit]").click()
    row = page.locator("tr", has_text=story["member"])
    expect(row).to_contain_text("pending")
    expect(row.get_by_role("button", name=f"Resend invitation to {story['member']}")).to_be_enabled()
    owner.shot("04-team-invited")

    link = invitation_link(settings, story["member"])
    mpage = member.page
    mpage.goto(link)
    expect(mpage.locator("h1")).to_contain_text("Acme Browser")
    member.titled("Acme Browser")
    member.shot("05-invitation-signed-out")
    mpage.click(f"text=Sign up as {story['member']}")
    mpage.wait_for_url("**/sign-up**")
    expect(mpage.locator("input[name=email]")).to_have_value(story["member"])
    mpage.fill("input[name=display_name]", "Max Member")
    mpage.fill("input[name=password]", PASSWORD)
    mpage.click("form button[type=submit]")
    confirm_from_mail(member, settings, story["member"])  # the link brings them back to the invitation
    mpage.wait_for_url("**/invitations/accept**")
    mpage.get_by_role("button", name="Accept invitation").click()
    mpage.wait_for_url(f"**/org/{slug}")
    expect(mpage.locator("#org-select")).to_have_value(slug)

    page.reload()
    expect(page.locator("tr", has_text=story["member"]).first).to_be_visible()
    expect(page.locator("section[aria-labelledby=inv-h] tr", has_text=story["member"])).to_contain_text("accepted")


# ---- 3. a project: wizard, live progress, ACTIVE_HEALTHY -----------------------------------------

def test_create_a_project_and_watch_it_come_up(owner: Person, story: dict[str, Any], settings: Settings) -> None:
    page = owner.go(f"/org/{story['slug']}")
    page.get_by_role("link", name="New project").click()
    page.wait_for_url("**/new-project")
    owner.titled("New project")
    limits = page.locator("#plan-limits")
    expect(limits).to_contain_text("active projects")
    expect(limits).to_contain_text("Database size")
    page.fill("input[name=name]", "Browser App")
    page.select_option("select[name=region]", "eu-central-1")
    page.fill("input[name=db_pass]", "abc12345")
    expect(page.locator(".strength-wrap p")).to_contain_text("Weak")
    page.click("form[aria-label='New project'] button[type=submit]")
    expect(page.locator("[data-error-for=db_pass]")).to_contain_text("eak")
    owner.shot("06-wizard-weak-password")
    page.get_by_role("button", name="Generate a password").click()
    expect(page.locator(".strength-wrap p")).to_contain_text("Strong")
    page.click("form[aria-label='New project'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/project/[a-z]{20}$"))
    story["ref"] = page.url.rsplit("/", 1)[1]
    owner.titled("Overview", "Browser App")

    # Follow the live progress until the project is up, noting every step the page showed
    # (recorded in the page: the step element goes away the moment the project is up).
    steps = owner.record("#progress-step")
    # For the documentation: the page mid-way, if it shows a step before the project is up.
    page.wait_for_function("""() => (document.querySelector('#progress-step')?.innerText || '').includes('Step')
        || /^(ACTIVE_HEALTHY|INIT_FAILED)$/.test(document.querySelector('#project-status [data-status]')?.dataset.status)""",
                           timeout=READY_TIMEOUT_MS)
    owner.shot("07-project-coming-up", full_page=False)
    final = wait_settled(page, "ACTIVE_HEALTHY")
    seen = set(steps.texts())
    assert final == "ACTIVE_HEALTHY", f"{final}; progress seen: {sorted(seen)}"
    story["progress_seen"] = sorted(seen)
    expect(page.locator("#connection-string")).to_have_value(re.compile(r"^postgresql://.+:\[YOUR-PASSWORD\]@.+/"))
    # The project's URL is on the project edge, another origin than this dashboard.
    expect(page.locator("#project-url")).to_have_value(settings.project_api_url(story["ref"]))
    # "Try it": supabase-js with this project's URL and its anon key (a JWT: three parts).
    snippet = page.locator("#try-it-snippet")
    expect(snippet).to_contain_text(f'createClient("{settings.project_api_url(story["ref"])}", "ey')
    expect(snippet).not_to_contain_text("<anon key")
    expect(page.locator("#progress")).to_be_empty()
    owner.shot("08-project-overview")
    print("progress shown while coming up:", story["progress_seen"])


# ---- 4. keys: reveal, copy, rotate ------------------------------------------------------------------

def test_reveal_and_copy_keys_then_rotate_the_jwt_secret(owner: Person, story: dict[str, Any]) -> None:
    page = owner.go(f"/project/{story['ref']}/api-keys")
    owner.titled("API keys")
    service = page.locator("#service-key")
    expect(service).to_have_attribute("type", "password")
    assert not service.input_value().startswith("ey"), "service key shown before reveal"
    page.get_by_role("button", name="Reveal").click()
    expect(service).to_have_attribute("type", "text")
    secret = service.input_value()
    assert secret.startswith("ey") and secret.count(".") == 2
    # The copy buttons write to the clipboard asynchronously: wait for it, do not read it once.
    page.get_by_role("button", name="Copy service_role key").click()
    wait_for("the service_role key on the clipboard", lambda: clipboard(page) == secret, timeout=15)
    anon = page.locator("#anon-key").input_value()
    page.get_by_role("button", name="Copy anon key").click()
    wait_for("the anon key on the clipboard", lambda: clipboard(page) == anon, timeout=15)
    owner.shot("09-api-keys-revealed")

    page.get_by_role("button", name="Generate a new JWT secret").click()
    dialog = page.locator("dialog[open]")
    confirm = dialog.get_by_role("button", name="Rotate secret")
    expect(confirm).to_be_disabled()  # until the project ref is typed
    owner.shot("10-rotate-confirmation", full_page=False)
    dialog.locator("input").fill(story["ref"])
    confirm.click()
    expect(page.locator("#anon-key")).not_to_have_value(anon)


# ---- 5. edge functions -------------------------------------------------------------------------------

def test_functions_page_and_secrets(owner: Person, story: dict[str, Any]) -> None:
    page = owner.go(f"/project/{story['ref']}/functions")
    expect(page.locator("h1")).to_have_text("Edge functions")
    owner.titled("Edge functions")
    expect(page.locator("main")).to_contain_text("supabase functions deploy")
    owner.shot("11-functions")
    page.get_by_role("link", name="Secrets", exact=True).click()
    page.wait_for_url("**/functions/secrets")
    owner.titled("Function secrets")
    add = page.locator("form[aria-label='Add a secret']")
    add.locator("input[name=name]").fill("STRIPE_KEY")
    add.locator("input[name=value]").fill("sk_test_123")
    add.locator("button[type=submit]").click()
    expect(page.locator("tr", has_text="STRIPE_KEY")).to_be_visible()
    assert "sk_test_123" not in page.content()
    owner.shot("12-function-secrets")


# ---- 6. usage ----------------------------------------------------------------------------------------------

def test_usage_charts_day_week_month(owner: Person, story: dict[str, Any]) -> None:
    page = owner.go(f"/org/{story['slug']}/usage")
    owner.titled("Usage")
    charts = page.locator("#usage-charts section[data-metric]")
    expect(charts).to_have_count(7)
    expect(charts.first.locator("svg rect.bar").first).to_be_attached()
    expect(page.locator("#quotas .quota")).to_have_count(7)
    owner.shot("13-usage-org-day")
    page.get_by_role("button", name="Week").click()
    expect(page.get_by_role("button", name="Week")).to_have_attribute("aria-pressed", "true")
    expect(charts.first.locator("svg rect.bar")).to_have_count(12)
    page.get_by_role("button", name="Month").click()
    expect(charts.first.locator("svg rect.bar")).to_have_count(6)
    owner.shot("14-usage-org-month")

    page = owner.go(f"/project/{story['ref']}/usage")
    owner.titled("Usage", "Browser App")
    expect(page.locator("#usage-charts section[data-metric]")).to_have_count(7)
    budget = page.locator("form[aria-label='Set a budget']")
    budget.locator("select[name=metric]").select_option("api_requests")
    budget.locator("input[name=limit]").fill("50000")
    budget.locator("button[type=submit]").click()
    expect(page.locator("#budgets")).to_contain_text("of 50,000")
    owner.shot("15-usage-project")


# ---- 7. billing: upgrade with a dry run -------------------------------------------------------------------

def test_upgrade_the_plan_after_the_dry_run(owner: Person, story: dict[str, Any]) -> None:
    page = owner.go(f"/org/{story['slug']}/billing")
    owner.titled("Billing")
    expect(page.locator("#current-plan")).to_have_text("Free")
    owner.shot("16-billing-free")
    page.get_by_role("button", name="Upgrade to Pro").click()
    dialog = page.locator("dialog#plan-preview")
    expect(dialog).to_contain_text("Upgrade: Free → Pro")
    expect(dialog).to_contain_text("What changes")
    owner.shot("17-upgrade-dry-run", full_page=False)
    dialog.get_by_role("button", name="Upgrade to Pro").click()
    expect(page.locator("#current-plan")).to_have_text("Pro")
    expect(page.locator("[data-plan=pro]")).to_contain_text("Current plan")


# ---- 7b. settings pages, the settings history, and the rest of the organization and account -------------

def test_settings_pages_and_their_history(owner: Person, story: dict[str, Any]) -> None:
    ref, slug = story["ref"], story["slug"]
    page = owner.go(f"/project/{ref}/settings/api")
    owner.titled("API settings")
    api = page.locator("form[aria-label='API settings']")
    api.locator("input[name=max_rows]").fill("-5")
    api.locator("button[type=submit]").click()
    expect(api.locator("[data-error-for=max_rows]")).not_to_be_empty()  # the server's message, beside the field
    api.locator("input[name=max_rows]").fill("500")
    api.locator("button[type=submit]").click()
    expect(api.locator("[data-error-for=max_rows]")).to_be_empty()
    owner.shot("16a-settings-api")

    page = owner.go(f"/project/{ref}/settings/auth")
    owner.titled("Auth settings")
    auth = page.locator("form[aria-label='Common auth settings']")
    auth.locator("input[name=site_url]").fill("https://app.example.com")
    auth.locator("button[type=submit]").click()
    expect(page.locator("#toasts")).to_contain_text("Saved 1 setting")
    owner.shot("16b-settings-auth")

    page = owner.go(f"/project/{ref}/settings/history")
    owner.titled("Settings history")
    history = page.locator("main table")
    expect(history).to_contain_text("max_rows=500")
    expect(history).to_contain_text("site_url=https://app.example.com")
    expect(history).to_contain_text(story["owner"])
    owner.shot("16c-settings-history")

    page = owner.go(f"/project/{ref}/settings")
    owner.titled("General settings")
    expect(page.locator("button[name=delete]")).to_be_enabled()
    owner.shot("16d-settings-general")

    for path, title, shot in [(f"/org/{slug}/settings", "Settings", "16e-org-settings"),
                              (f"/org/{slug}/audit", "Audit log", "16f-org-audit"),
                              ("/account", "Profile", "16g-account-profile")]:
        owner.go(path)
        owner.titled(title)
        owner.shot(shot)
    page = owner.go("/account/tokens")
    owner.titled("Access tokens")
    page.locator("form[aria-label='New access token'] input[name=name]").fill("CI")
    page.locator("form[aria-label='New access token'] button[type=submit]").click()
    expect(page.locator("main input[aria-label='New token']")).to_have_value(re.compile(r"^sbp_[0-9a-f]{40}$"))
    expect(page.locator("main tr", has_text="CI")).to_be_visible()
    owner.shot("16h-account-tokens")


# ---- 8. a member without rights: buttons disabled, and the server refuses anyway ---------------------

def test_member_sees_disabled_buttons_and_the_server_refuses(member: Person, story: dict[str, Any]) -> None:
    ref, slug = story["ref"], story["slug"]
    page = member.go(f"/project/{ref}")
    expect(page.locator("#project-status [data-status]")).to_have_attribute("data-status", "ACTIVE_HEALTHY")
    pause = page.locator("button[name=pause]")
    expect(pause).to_be_disabled()
    expect(pause).to_have_attribute("title", re.compile("role \\(member\\)"))
    member.shot("18-member-overview")

    page = member.go(f"/project/{ref}/api-keys")
    expect(page.locator("#anon-key")).not_to_have_value("")
    expect(page.locator("button[name=reveal]")).to_be_disabled()
    expect(page.locator("button[name=rotate]")).to_be_disabled()
    assert page.locator("#service-key").input_value() == ""
    member.shot("19-member-api-keys")

    page = member.go(f"/project/{ref}/settings")
    expect(page.locator("button[name=delete]")).to_be_disabled()
    page = member.go(f"/org/{slug}/team")
    expect(page.locator("form[aria-label='Invite a member'] button[type=submit]")).to_be_disabled()
    page = member.go(f"/org/{slug}/billing")
    expect(page.locator("button[name=plan-enterprise], button[name=plan-team]").first).to_be_disabled()

    # The same actions sent straight to the API from the member's session: refused by the server.
    for method, path, body in [("POST", f"/v1/projects/{ref}/pause", None),
                               ("POST", f"/platform/projects/{ref}/jwt-secret/rotate", None),
                               ("DELETE", f"/v1/projects/{ref}", None),
                               ("POST", f"/platform/organizations/{slug}/invitations", {"email": "x@example.com", "role": "member"}),
                               ("PUT", f"/platform/organizations/{slug}/billing/subscription", {"plan": "free"})]:
        r = member.fetch(method, path, body)
        assert r["status"] == 403, (method, path, r)
    keys = member.fetch("GET", f"/v1/projects/{ref}/api-keys")
    assert [k["name"] for k in keys["body"]] == ["anon"]
    # And the admin panel is not theirs either.
    assert member.fetch("GET", "/platform/admin/overview")["status"] == 403
    page = member.go("/admin")
    expect(page.locator("main")).to_contain_text("platform admins only")


# ---- 9. the admin panel ------------------------------------------------------------------------------------

def test_admin_sees_the_project_in_the_admin_panel(admin: Person, settings: Settings, story: dict[str, Any]) -> None:
    page = admin.go("/sign-up")
    address = email("admin")
    sign_up(admin, address, "Ada Admin")
    confirm_from_mail(admin, settings, address)
    page.wait_for_url("**/new-org")
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    # The operator's way to make an admin: platformctl users promote --email E
    done = subprocess.run([sys.executable, "-m", "services.shared.platformctl", "users", "promote", "--email", address],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "platform admin" in done.stdout
    page.reload()
    page.get_by_role("link", name="Admin", exact=True).click()
    page.wait_for_url("**/admin")
    admin.titled("Overview", "Admin")
    expect(page.locator("#stat-orgs")).not_to_have_text("0")
    expect(page.locator("#projects-by-status")).to_contain_text("Active")
    expect(page.locator("#admin-usage")).to_contain_text("API requests")  # platform totals from metering
    admin.shot("20-admin-overview")

    page.get_by_role("link", name="Projects").click()
    page.wait_for_url("**/admin/projects")
    row = page.locator("#admin-projects tr", has_text=story["ref"])
    expect(row).to_contain_text("Browser App")
    expect(row).to_contain_text(story["slug"])
    expect(row.get_by_role("button", name="Pause Browser App")).to_be_enabled()
    admin.shot("21-admin-projects")

    page.get_by_role("link", name="Organizations").click()
    expect(page.locator("tr", has_text=story["slug"])).to_contain_text(story["owner"])
    admin.shot("22-admin-organizations")

    page.get_by_role("link", name="Users").click()
    page.wait_for_url("**/admin/users")
    me = page.locator("#admin-users tr", has_text=address)
    expect(me).to_contain_text("platform admin")
    expect(me.get_by_role("button", name=f"Disable: {address}")).to_be_disabled()  # not yourself
    admin.shot("23-admin-users")

    page.get_by_role("link", name="System health").click()
    page.wait_for_url("**/admin/health")
    health = page.locator("#health")
    processes = health.locator("section[aria-labelledby=proc-h]")
    for name in ("gateway", "orgs", "projects", "relay"):
        row = processes.locator("tr").filter(has=page.locator("td:first-child", has_text=re.compile(rf"^{name}$")))
        expect(row).to_contain_text("up", timeout=30_000)
    expect(health).to_contain_text("rpc-orgs")
    admin.shot("24-admin-health")

    # Time travel: the project's timeline from the projects table, and its state at its first event.
    page.get_by_role("link", name="Projects").click()
    page.wait_for_url("**/admin/projects")
    page.get_by_role("link", name="History of Browser App").click()
    page.wait_for_url("**/admin/history?kind=project*")
    result = page.locator("#history-result")
    expect(result).to_contain_text("Project.Requested")
    expect(page.locator("#history-state")).to_contain_text(story["ref"])
    result.get_by_role("button", name="State at version 1", exact=True).click()
    expect(page.locator("#history-state-h")).to_contain_text("version 1 of")
    expect(page.locator("#history-state")).to_contain_text('"status": "COMING_UP"')
    admin.shot("24b-admin-history")


def test_admin_disables_a_user_whose_session_ends(admin: Person, member: Person, story: dict[str, Any]) -> None:
    page = admin.go("/admin/users")
    row = page.locator("#admin-users tr", has_text=story["member"])
    row.get_by_role("button", name=f"Disable: {story['member']}").click()
    page.locator("dialog[open]").get_by_role("button", name="Disable account").click()
    expect(row).to_contain_text("disabled")
    assert member.fetch("GET", "/platform/profile")["status"] == 401
    row.get_by_role("button", name=f"Enable: {story['member']}").click()
    expect(row).not_to_contain_text("disabled")


# ---- 10. pause and restore, with their progress -------------------------------------------------------------

def wait_settled(page: Any, until: str) -> str:
    """Wait until the overview's status is `until` or a failure (both final: the page stops
    polling), and return it."""
    status = page.locator("#project-status [data-status]")
    expect(status).to_have_attribute("data-status", re.compile(rf"^({re.escape(until)}|[A-Z_]+_FAILED)$"),
                                     timeout=READY_TIMEOUT_MS)
    return str(status.get_attribute("data-status"))


def follow(person: Person, start: Any, until: str) -> list[str]:
    """Do `start()` on the overview, then wait until the status is `until`; returns every text
    the progress panel showed meanwhile (recorded in the page, so no step is missed)."""
    panel = person.record("#progress")
    start()
    final = wait_settled(person.page, until)
    seen = panel.texts()
    assert final == until, f"status {final}, not {until}; progress seen: {seen}"
    return seen


def test_pause_and_restore_show_their_progress(owner: Person, story: dict[str, Any]) -> None:
    page = owner.go(f"/project/{story['ref']}")
    expect(page.locator("#project-status [data-status]")).to_have_attribute("data-status", "ACTIVE_HEALTHY")

    def pause() -> None:
        page.get_by_role("button", name="Pause project").click()
        page.locator("dialog[open]").get_by_role("button", name="Pause project").click()

    seen = follow(owner, pause, "INACTIVE")
    assert any("Pausing the project" in t for t in seen), seen  # the panel showed the operation
    expect(page.locator("#progress")).to_be_empty()
    owner.shot("25-project-paused")
    seen_restore = follow(owner, page.get_by_role("button", name="Restore project").click, "ACTIVE_HEALTHY")
    assert any("Restoring the project" in t for t in seen_restore), seen_restore
    expect(page.locator("#connection-string")).to_have_value(re.compile("^postgresql://"))
    print("pause progress:", seen, "restore progress:", seen_restore)


# ---- 11. keyboard and narrow screens --------------------------------------------------------------------------

def test_keyboard_only_sign_in(browser: Any, base_url: str, story: dict[str, Any]) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base_url)
    try:
        page = context.new_page()
        page.goto(base_url + "/sign-in")
        expect(page.locator("input[name=email]")).to_be_visible()  # rendered: keys now reach this page
        page.keyboard.press("Tab")
        expect(page.locator("a.skip-link")).to_be_focused()
        for _ in range(3):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.name") == "email":
                break
        assert page.evaluate("document.activeElement.name") == "email"
        page.keyboard.type(story["owner"])
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/org/[\w-]+$"))
        # The page renders after the URL changes: Tab only once its heading is there, or the
        # key lands on a page that is being replaced and focus stays on <body>.
        # After a navigation the page moves focus to its heading (layout.js); Tab from there.
        expect(page.locator("main h1")).to_be_focused()
        page.keyboard.press("Tab")
        page.wait_for_function("document.activeElement && document.activeElement !== document.body "
                               "&& document.activeElement !== document.querySelector('main h1')")
        # Focus is visible: the focused element gets an outline.
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", page.evaluate("document.activeElement.outerHTML.slice(0, 200)")
    finally:
        context.close()


def test_narrow_screen_has_a_drawer_sidebar(owner: Person, story: dict[str, Any]) -> None:
    page = owner.page
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        owner.go(f"/project/{story['ref']}")
        sidebar = page.locator("#sidebar")
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_be_visible()
        expect(sidebar).to_be_hidden()
        owner.shot("26-narrow-overview")
        menu.click()
        expect(sidebar).to_be_visible()
        expect(menu).to_have_attribute("aria-expanded", "true")
        owner.shot("27-narrow-menu-open", full_page=False)
        sidebar.get_by_role("link", name="API keys").click()
        page.wait_for_url("**/api-keys")
        expect(sidebar).to_be_hidden()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"page scrolls sideways on a narrow screen ({width}px)"
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})
