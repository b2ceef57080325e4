"""The Realtime pages in a real browser, on the project the dashboard flow created (on the
pro plan by then): the settings form shows the plan's ceilings and puts each refusal next to
its field, saves a change the API then answers, and disconnects every client after a confirm;
the inspector joins a channel on the project edge as anon and receives the broadcast it sent,
with its time and latency."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from .fixtures import Person


def test_realtime_settings_form(owner: Person, story: dict[str, Any]) -> None:
    ref = story["ref"]
    page = owner.go(f"/project/{ref}/realtime")
    owner.titled("Realtime settings")
    form = page.locator("form#realtime-settings")
    users = form.locator("input[name=max_concurrent_users]")
    expect(users).to_have_value("200")
    expect(form).to_contain_text("Plan ceiling: 500 (pro)")

    # Above the API's bound, then above the plan's ceiling: each said beside the field, nothing saved.
    users.fill("60000")
    form.get_by_role("button", name="Save").click()
    expect(form.locator("[data-error-for=max_concurrent_users]")).to_contain_text("From 1 to 50,000")
    users.fill("501")
    form.get_by_role("button", name="Save").click()
    expect(form.locator("[data-error-for=max_concurrent_users]")).to_contain_text("pro plan allows at most 500")
    assert owner.fetch("GET", f"/v1/projects/{ref}/config/realtime")["body"]["max_concurrent_users"] == 200

    # A change within the ceiling is saved, and is what the API answers.
    users.fill("42")
    form.locator("input[name=presence_enabled]").uncheck()
    form.get_by_role("button", name="Save").click()
    expect(page.locator(".toast", has_text="Realtime settings saved")).to_be_visible()
    expect(page.locator("form#realtime-settings input[name=max_concurrent_users]")).to_have_value("42")
    cfg = owner.fetch("GET", f"/v1/projects/{ref}/config/realtime")["body"]
    assert cfg["max_concurrent_users"] == 42 and cfg["presence_enabled"] is False
    owner.shot("40-realtime-settings")

    # Disconnect every client, after a confirm.
    page.get_by_role("button", name="Disconnect all clients").click()
    page.locator("dialog[open]").get_by_role("button", name="Disconnect all").click()
    expect(page.locator(".toast", has_text="Every realtime client was disconnected")).to_be_visible()
    presence = owner.fetch("PATCH", f"/v1/projects/{ref}/config/realtime", {"presence_enabled": True})
    assert presence["status"] == 204


def test_inspector_receives_the_broadcast_it_sent(owner: Person, story: dict[str, Any]) -> None:
    ref = story["ref"]
    page = owner.go(f"/project/{ref}/realtime/inspector")
    owner.titled("Realtime inspector")
    page.locator("input[name=channel]").fill("browser-room")
    page.get_by_role("button", name="Join").click()
    # The project's first realtime connection: the edge and the server look the project up
    # first (seconds on a loaded machine), so this wait is longer than expect's default.
    expect(page.locator("#rt-status")).to_contain_text("Joined browser-room as anon", timeout=30_000)
    page.locator("input[name=event]").fill("greeting")
    page.locator("textarea[name=payload]").fill('{"text": "hello from the inspector"}')
    page.get_by_role("button", name="Send broadcast").click()
    row = page.locator("#rt-messages tr[data-kind=broadcast]", has_text="hello from the inspector")
    expect(row).to_be_visible()
    expect(row).to_contain_text("greeting")
    expect(row.locator("td").nth(4)).to_contain_text(" ms")
    # The ack of the push is listed too, with its round trip.
    expect(page.locator("#rt-messages tr[data-kind=reply]", has_text="greeting")).to_contain_text(" ms")
    owner.shot("41-realtime-inspector")
    page.get_by_role("button", name="Leave").click()
    expect(page.locator("#rt-status")).to_contain_text("Left the channel")


def test_inspector_joins_as_a_signed_in_test_user_and_as_the_service_role(owner: Person, story: dict[str, Any]) -> None:
    ref = story["ref"]
    user = owner.fetch("POST", f"/platform/projects/{ref}/auth/users",
                       {"email": "inspector-user@example.com", "password": "inspector-password-1"})
    assert user["status"] == 201, user
    page = owner.go(f"/project/{ref}/realtime/inspector")
    owner.titled("Realtime inspector")
    page.locator("select[name=role]").select_option("authenticated")
    page.locator("input[name=email]").fill("inspector-user@example.com")
    page.locator("input[name=password]").fill("inspector-password-1")
    page.get_by_role("button", name="Sign in test user").click()
    # The browser signed the user in at the project's Auth on the edge: its JWT is in the field.
    expect(page.locator("textarea[name=jwt]")).to_have_value(re.compile(r"^ey[\w-]+\.[\w-]+\.[\w-]+$"))
    page.locator("input[name=channel]").fill("user-room")
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#rt-status")).to_contain_text("Joined user-room as authenticated", timeout=30_000)

    page.locator("select[name=role]").select_option("service_role")
    page.locator("input[name=channel]").fill("service-room")
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#rt-status")).to_contain_text("Joined service-room as service_role", timeout=30_000)
    page.get_by_role("button", name="Leave").click()
