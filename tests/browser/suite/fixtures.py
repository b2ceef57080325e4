"""Fixtures of the browser suite (loaded with `-p tests.browser.suite.fixtures`; the suite runs
without the root conftest, see tests/browser/test_browser.py).

One Chromium for the whole suite (Debian's, through executable_path), one browser context
per person (owner, member, admin) so each has its own cookies; screenshots of each main page
go to artifacts/screenshots/. Every page a person opens is watched for JavaScript errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from services.shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# Headless, and quiet: without the networking flags Chromium keeps calling home on a closed network.
# (Playwright gives every launch a fresh temporary profile, i.e. its own --user-data-dir.)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}


RECORD_JS = """([name, selector]) => {
  const seen = ((window.__recorded ||= {})[name] = []);
  const look = () => {
    const el = document.querySelector(selector);
    const text = el ? el.innerText.trim() : "";
    if (text && seen[seen.length - 1] !== text) seen.push(text);
  };
  look();
  new MutationObserver(look).observe(document.documentElement,
    { subtree: true, childList: true, characterData: true, attributes: true });
}"""


class Recorder:
    """The texts one element showed since `Person.record` (consecutive repeats once)."""

    def __init__(self, page: Page, name: str):
        self.page = page
        self.name = name

    def texts(self) -> list[str]:
        return list(self.page.evaluate("(name) => (window.__recorded || {})[name] || []", self.name))


class Person:
    """Someone using the dashboard in their own browser context."""

    def __init__(self, name: str, context: BrowserContext, base: str):
        self.name = name
        self.context = context
        self.base = base
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self._recorders: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"{self.name}: {e}"))
        self.page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        # A 401 while finding out whether anyone is signed in, or a refusal the test provoked,
        # is the browser logging an HTTP status, not a script error.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.errors.append(f"{self.name}: console: {msg.text}")

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def shot(self, name: str, full_page: bool = True) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.wait_for_load_state("networkidle")
        if full_page:
            # From the top: a full-page capture of a scrolled page shows the sticky top bar mid-page.
            self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def titled(self, *words: str) -> None:
        """Every page has a title of its own: '<what> · Supaplatform' (waits for the page to draw)."""
        ahead = "".join(f"(?=.*{re.escape(w)})" for w in words)
        expect(self.page).to_have_title(re.compile(f"^{ahead}.+ · Supaplatform$"))

    def record(self, selector: str) -> "Recorder":
        """From now on, note every text the element at `selector` shows, in the page itself.

        A MutationObserver looks after every change the page makes, so a state that lasts a
        moment (a progress step) is not missed, and nothing is read from the test's side while
        the page may be replacing it. Lasts until the next full page load."""
        name = f"r{len(self._recorders)}"
        self._recorders.append(name)
        self.page.evaluate(RECORD_JS, [name, selector])
        return Recorder(self.page, name)

    def fetch(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A request from this person's page with their session and CSRF token, as a forged
        click would send it: {status, body}."""
        return self.page.evaluate(
            """async ([method, path, body]) => {
                 const s = await (await fetch('/platform/auth/session')).json();
                 const r = await fetch(path, {method, headers: {'Content-Type': 'application/json',
                   'X-CSRF-Token': s.csrf_token}, body: body === null ? undefined : JSON.stringify(body)});
                 let data = null; try { data = await r.json(); } catch (e) {}
                 return {status: r.status, body: data};
               }""", [method, path, body])


@pytest.fixture(scope="session")
def base_url() -> str:
    url = os.environ.get("SP_BROWSER_BASE_URL")
    if not url:
        pytest.fail("SP_BROWSER_BASE_URL is not set: run the browser suite through tests/browser/test_browser.py")
    return url


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _person(browser: Browser, base_url: str, name: str) -> Iterator[Person]:
    context = browser.new_context(viewport=DESKTOP, base_url=base_url, reduced_motion="reduce")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    context.set_default_timeout(15_000)
    person = Person(name, context, base_url)
    try:
        yield person
    finally:
        context.close()
    assert not person.errors, "JavaScript errors:\n" + "\n".join(person.errors)


@pytest.fixture(scope="session")
def owner(browser: Browser, base_url: str) -> Iterator[Person]:
    yield from _person(browser, base_url, "owner")


@pytest.fixture(scope="session")
def member(browser: Browser, base_url: str) -> Iterator[Person]:
    yield from _person(browser, base_url, "member")


@pytest.fixture(scope="session")
def admin(browser: Browser, base_url: str) -> Iterator[Person]:
    yield from _person(browser, base_url, "admin")


@pytest.fixture(scope="session")
def story() -> dict[str, Any]:
    """What earlier steps made (emails, org slug, project ref), for the later ones."""
    return {}


def slug_of(url: str) -> str:
    m = re.search(r"/org/([\w-]+)", url)
    assert m, url
    return m.group(1)


@pytest.fixture(scope="session")
def reader(browser: Browser, base_url: str) -> Iterator[Person]:
    """Someone who first has no role in the organization, then the read-only role."""
    yield from _person(browser, base_url, "reader")


@pytest.fixture(scope="session")
def stranger(browser: Browser, base_url: str) -> Iterator[Person]:
    """Someone with an account and a project of their own, and no role in the story's organization."""
    yield from _person(browser, base_url, "stranger")
