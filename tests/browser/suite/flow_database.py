"""The database pages in a real browser, on the project the dashboard flow created: create a
table in the table editor, insert and edit a row, run a query in the SQL editor and see the
row; a non-member gets nothing (pages or API paths); a read-only member sees the data but
cannot write. Then the Studio bridge (docs/studio.md): the same pages on the Studio origin
through a one-time code, the schema visualizer, the project picker keeping the page, and
nobody but members reaching anything there."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from services.shared.settings import Settings

from .fixtures import Person
from .flow_dashboard import PASSWORD, confirm_from_mail, email, mailed_link


def test_table_editor_and_sql_editor(owner: Person, story: dict[str, Any]) -> None:
    ref = story["ref"]
    page = owner.go(f"/project/{ref}/database")
    owner.titled("Table editor")
    new = page.locator("form[aria-label='New table']")
    new.locator("input[name=name]").fill("notes")
    new.locator("textarea[name=columns]").fill("id bigint primary key identity\ntitle text not null")
    new.get_by_role("button", name="Create table").click()
    page.wait_for_url(f"**/project/{ref}/database/tables/public/notes")
    expect(page.locator("h1")).to_contain_text("notes")

    # Insert a row, then edit it.
    insert = page.locator("form[aria-label='Insert row']")
    insert.locator("input[name=title]").fill("first note")
    insert.get_by_role("button", name="Insert row").click()
    expect(page.locator("table", has_text="first note")).to_be_visible()
    expect(page.locator("#rows-count")).to_contain_text("of 1")
    page.get_by_role("button", name='Edit row {"id":1}').click()
    edit = page.locator("form[aria-label='Edit row']")
    edit.locator("input[name=title]").fill("edited note")
    edit.get_by_role("button", name="Save row").click()
    expect(page.locator("table", has_text="edited note")).to_be_visible()
    owner.shot("30-table-editor")

    # The SQL editor runs the query and shows the row in its grid.
    page = owner.go(f"/project/{ref}/database/sql")
    page.locator("textarea[name=query]").fill("select id, title from public.notes")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#sql-results table")).to_contain_text("edited note")
    # Saved as a snippet (the owner's own) and kept in the history.
    page.get_by_role("button", name="Save as snippet").click()
    expect(page.get_by_role("button", name="Open snippet select id, title from public.notes")).to_be_visible()
    expect(page.locator("#sql-history")).to_contain_text("select id, title from public.notes")
    owner.shot("31-sql-editor")

    # Migrations, policies and types pages draw (types name the new table, with a copy button).
    page = owner.go(f"/project/{ref}/database/types")
    expect(page.locator("#ts-types")).to_contain_text("notes: {")
    expect(page.get_by_role("button", name="Copy types")).to_be_visible()
    page = owner.go(f"/project/{ref}/database/policies")
    expect(page.locator("section", has_text="notes")).to_contain_text("RLS disabled")


def test_non_member_gets_nothing_then_read_only_member_cannot_write(owner: Person, reader: Person,
                                                                     settings: Settings, story: dict[str, Any]) -> None:
    ref = story["ref"]
    address = email("reader")
    page = reader.go("/sign-up")
    page.fill("input[name=email]", address)
    page.fill("input[name=display_name]", "Rita Reader")
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    confirm_from_mail(reader, settings, address)
    page.wait_for_url("**/new-org**")

    # Not a member: the database pages and their API paths answer 404, with nothing in them.
    for method, path, body in (("GET", f"/platform/projects/{ref}/database/tables", None),
                               ("GET", f"/platform/projects/{ref}/database/tables/public/notes/rows", None),
                               ("POST", f"/v1/projects/{ref}/database/query", {"query": "select 1"}),
                               ("POST", f"/v1/projects/{ref}/database/query/read-only", {"query": "select 1"})):
        r = reader.fetch(method, path, body)
        assert r["status"] == 404, (path, r)
        assert "edited note" not in str(r["body"])
    page = reader.go(f"/project/{ref}/database/tables/public/notes")
    expect(page.locator("h1")).to_contain_text("Not found")

    # Invited with the read-only role, at their work address, which their account does not
    # have yet. They move the account to it: unconfirmed, so the invitation cannot be taken
    # (no Accept button, and the server refuses) until the mailbox confirms it.
    work = email("reader-work")
    r = owner.fetch("POST", f"/platform/organizations/{story['slug']}/invitations",
                    {"email": work, "role": "read_only"})
    assert r["status"] == 201, r
    page = reader.go("/account")
    profile = page.locator("form[aria-label='Profile']")
    profile.locator("input[name=email]").fill(work)
    profile.locator("button[type=submit]").click()
    expect(page.locator("section[aria-labelledby=verify-h]")).to_contain_text(f"{work} is not confirmed")
    link = mailed_link(settings, work, "/invitations/accept")  # (the latest mail is the confirmation link)
    page.goto(link)
    expect(page.locator(".notice.warn")).to_contain_text("before accepting")
    expect(page.get_by_role("button", name="Accept invitation")).to_have_count(0)
    token = link.split("token=", 1)[1]
    refused = reader.fetch("POST", "/platform/invitations/accept", {"token": token})
    assert refused["status"] == 403 and "confirm your email" in refused["body"]["message"], refused
    reader.shot("32a-invitation-unconfirmed")
    page.get_by_role("button", name="Send me a confirmation link").click()
    expect(page.locator(".notice.ok")).to_contain_text(work)
    page.goto(mailed_link(settings, work, "/verify-email"))
    page.wait_for_url("**/invitations/accept**")  # the link brings them back to the invitation
    page.get_by_role("button", name="Accept invitation").click()
    page.wait_for_url(f"**/org/{story['slug']}")

    # It sees the data, its write buttons are disabled, and the server refuses the writes anyway.
    page = reader.go(f"/project/{ref}/database/tables/public/notes")
    expect(page.locator("table", has_text="edited note")).to_be_visible()
    expect(page.get_by_role("button", name="Insert row")).to_be_disabled()
    rows = f"/platform/projects/{ref}/database/tables/public/notes/rows"
    assert reader.fetch("POST", rows, {"values": {"title": "sneaky"}})["status"] == 403
    assert reader.fetch("PATCH", rows, {"match": {"id": 1}, "values": {"title": "sneaky"}})["status"] == 403
    assert reader.fetch("POST", f"/v1/projects/{ref}/database/query",
                        {"query": "delete from public.notes"})["status"] == 403
    # Read-only SQL works in the SQL editor.
    page = reader.go(f"/project/{ref}/database/sql")
    page.locator("textarea[name=query]").fill("select title from public.notes")
    page.get_by_role("button", name="Run (read-only)").click()
    expect(page.locator("#sql-results table")).to_contain_text("edited note")
    page.locator("textarea[name=query]").fill("insert into public.notes (title) values ('sneaky')")
    page.get_by_role("button", name="Run (read-only)").click()
    expect(page.locator("#sql-results")).to_contain_text("read-only transaction")
    reader.shot("32-read-only-sql")
    r = owner.fetch("POST", f"/v1/projects/{ref}/database/query", {"query": "select count(*)::int as n from public.notes"})
    assert r["body"] == [{"n": 1}], r


def studio_origin(settings: Settings) -> str:
    return settings.studio_url()


def test_studio_bridge_and_project_picker(owner: Person, reader: Person, stranger: Person, settings: Settings,
                                          story: dict[str, Any]) -> None:
    ref, studio = story["ref"], studio_origin(settings)
    assert studio != owner.base  # another origin: the Studio cookie never reaches the dashboard

    # From the SQL editor on the dashboard, "Open in Studio" lands on the same page on the Studio origin.
    page = owner.go(f"/project/{ref}/database/sql")
    page.locator("#open-studio").click()
    page.wait_for_url(f"{studio}/project/{ref}/database/sql")
    expect(page.locator("#studio-mark")).to_have_text("Studio")
    page.locator("textarea[name=query]").fill("select id, title from public.notes")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#sql-results table")).to_contain_text("edited note")
    # The schema visualizer draws the table; the code in the address bar was used up.
    page.get_by_role("link", name="Schema visualizer").click()
    page.wait_for_url(f"{studio}/project/{ref}/database/schema")
    expect(page.locator("[data-table=notes]")).to_contain_text("title")
    owner.shot("33-studio-schema")
    cookies = {c["name"]: c for c in owner.context.cookies(studio)}
    assert cookies["sp_studio"]["httpOnly"] and cookies["sp_studio"]["sameSite"] == "Lax"
    assert not cookies["sp_studio"]["domain"].startswith(".")  # host-only
    assert "sp_studio" not in {c["name"] for c in owner.context.cookies(owner.base)}
    # A platform page from Studio's navigation is the dashboard's, and back.
    page.get_by_role("link", name="API keys").click()
    page.wait_for_url(f"{owner.base}/project/{ref}/api-keys")
    owner.titled("API keys")

    # The project picker keeps you on the same page of another project (dashboard and Studio).
    r = owner.fetch("POST", "/v1/projects", {"name": "second", "organization_slug": story["slug"],
                                             "db_pass": "tenant-password-2", "region": "us-east-1"})
    assert r["status"] == 201, r
    second = r["body"]["id"]
    page = owner.go(f"/project/{ref}/database/migrations")
    page.locator("#project-select").select_option(second)
    page.wait_for_url(f"**/project/{second}/database/migrations")
    owner.titled("Migrations", "second")  # the second project's page is drawn (its own picker)
    page.locator("#project-select").select_option(ref)
    page.wait_for_url(f"**/project/{ref}/database/migrations")
    owner.titled("Migrations", "Browser App")
    page.locator("#open-studio").click()
    page.wait_for_url(f"{studio}/project/{ref}/database/migrations")
    owner.titled("Migrations", "Browser App")
    page.locator("#project-select").select_option(second)
    page.wait_for_url(f"{studio}/project/{second}/database/migrations")
    expect(page.locator("#studio-mark")).to_be_visible()

    # The read-only member: through the bridge, sees the rows; cannot write, in the page or by hand.
    page = reader.go(f"/platform/projects/{ref}/studio?page=database/tables/public/notes")
    page.wait_for_url(f"{studio}/project/{ref}/database/tables/public/notes")
    expect(page.locator("table", has_text="edited note")).to_be_visible()
    expect(page.get_by_role("button", name="Insert row")).to_be_disabled()
    rows = f"/platform/projects/{ref}/database/tables/public/notes/rows"
    assert reader.fetch("POST", rows, {"values": {"title": "sneaky"}})["status"] == 403
    assert reader.fetch("POST", f"/v1/projects/{ref}/database/query", {"query": "delete from public.notes"})["status"] == 403
    r = reader.fetch("POST", f"/v1/projects/{ref}/database/query/read-only", {"query": "select count(*)::int as n from public.notes"})
    assert r["status"] == 201 and r["body"] == [{"n": 1}], r
    # Only the Studio's own routes answer there, and never another project's.
    assert reader.fetch("GET", f"/platform/projects/{ref}/settings/history")["status"] == 404
    assert reader.fetch("GET", f"/platform/projects/{second}/database/tables")["status"] == 404

    # A stranger gets nothing: not a code from the bridge, not a page on the Studio origin,
    # not its API paths, not even with a Studio session of their own project.
    page = stranger.go("/sign-up")
    address = email("stranger")
    page.fill("input[name=email]", address)
    page.fill("input[name=display_name]", "Sam Stranger")
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    confirm_from_mail(stranger, settings, address)  # sign-up answers "check your mail" now
    page.wait_for_url("**/new-org**")
    r = stranger.fetch("GET", f"/platform/projects/{ref}/studio")
    assert r["status"] == 404, r
    page = stranger.page
    page.goto(f"{studio}/project/{ref}/database/tables/public/notes")  # no cookie: sent to the dashboard's bridge
    expect(page.locator("body")).to_contain_text("not found")
    assert "edited note" not in page.content()
    r = stranger.fetch("POST", "/v1/organizations", {"name": "Stranger Org"})
    assert r["status"] == 201, r
    r = stranger.fetch("POST", "/v1/projects", {"name": "theirs", "organization_slug": r["body"]["slug"],
                                                "db_pass": "tenant-password-3", "region": "us-east-1"})
    assert r["status"] == 201, r
    own = r["body"]["id"]
    page = stranger.go(f"/platform/projects/{own}/studio")
    page.wait_for_url(f"{studio}/project/{own}/database", timeout=90_000)
    for method, path, body in (("GET", f"/platform/projects/{ref}/database/tables", None),
                               ("GET", f"/platform/projects/{ref}/database/tables/public/notes/rows", None),
                               ("GET", f"/platform/projects/{ref}", None),
                               ("GET", f"/v1/projects/{ref}/types/typescript", None),
                               ("POST", f"/v1/projects/{ref}/database/query", {"query": "select 1"}),
                               ("POST", f"/v1/projects/{ref}/database/query/read-only", {"query": "select 1"})):
        r = stranger.fetch(method, path, body)
        assert r["status"] == 404, (path, r)
        assert "edited note" not in str(r["body"]) and "notes" not in str(r["body"])
