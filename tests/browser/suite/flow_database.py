"""The database pages in a real browser, on the project the dashboard flow created: create a
table in the table editor, insert and edit a row, run a query in the SQL editor and see the
row; a non-member gets nothing (pages or API paths); a read-only member sees the data but
cannot write."""

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
