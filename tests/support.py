"""Helpers shared by the test suites: polling, and fakes of other services' ports that
follow the real permission matrix."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any, Callable, TypeVar

from services.orgs.permissions import allowed
from services.shared.errors import Forbidden, NotFound

T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `fn` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {value!r})")
        time.sleep(interval)
        value = fn()
    return value


def stop_process(proc: "subprocess.Popen[Any]", timeout: float = 10.0, *, group: bool = False) -> None:
    """Stop a process a test started, whatever state it is in: SIGTERM, then SIGKILL if it
    has not gone after `timeout` s. `group`: signal its whole process group (it was started
    with start_new_session=True). For finalizers: never raises because the process is slow."""
    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    if proc.poll() is None:
        send(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None or group:
        send(signal.SIGKILL)  # a group: also whatever the leader left behind
    proc.wait(timeout=10)


class FakeOrgs:
    """The orgs port as other services use it: roles per (user, org), checked against the
    real permission matrix, strangers get NotFound."""

    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], str] = {}

    def authorize(self, user_id: str, slug: str, action: str) -> dict[str, Any]:
        role = self.roles.get((user_id, slug))
        if role is None:
            raise NotFound(f"organization {slug} not found")
        if not allowed(role, action):
            raise Forbidden(f"your role ({role}) does not allow this")
        return {"slug": slug, "name": slug, "role": role}

    def list_organizations(self, user_id: str) -> list[dict[str, Any]]:
        return [{"slug": s} for (u, s) in self.roles if u == user_id]



class TcpProxy:
    """A TCP forwarder a test can cut (tests/tcpproxy.py, in its own process: the test
    process is monkey-patched by eventlet, whose sockets dislike being closed under a
    reader). `cut()` closes every connection through it and refuses new ones (what a
    dependency's outage looks like to its clients), `restore()` lets them in again. Simulates
    PostgreSQL or RabbitMQ outages without touching the shared servers."""

    def __init__(self, target_host: str, target_port: int):
        import subprocess
        import sys
        from pathlib import Path

        here = Path(__file__).resolve().parent
        self.proc = subprocess.Popen([sys.executable, str(here / "tcpproxy.py"), target_host, str(target_port)],
                                     stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def _say(self, word: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == word

    def cut(self) -> None:
        self._say("cut")

    def restore(self) -> None:
        self._say("restore")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def mailed_link(settings: Any, to: str, path: str, timeout: float = 30.0) -> str:
    """The latest link to `path` (e.g. "/verify-email") mailed to `to` through the outbox."""
    import re

    from services.shared.mail import OutboxMailer, outbox_dir

    pattern = re.compile(r"(https?://\S+" + re.escape(path) + r"\?\S+)")

    def find() -> str | None:
        for mail in reversed([m for m in OutboxMailer(outbox_dir(settings)).list() if m.to == to]):
            m = pattern.search(mail.body)
            if m:
                return m.group(1)
        return None

    return wait_for(f"a mail to {to} with a {path} link", find, timeout=timeout, interval=0.1)


def sign_up_confirmed(http: Any, base: str, settings: Any, email: str, password: str,
                      display_name: str = "") -> dict[str, Any]:
    """Sign up through the gateway as a person would: the generic 202, then the mailed link
    (its token posted to /platform/auth/verify-email), which starts the session on `http`
    (a requests.Session). Returns the session info (user, csrf_token)."""
    from urllib.parse import parse_qs, urlsplit

    r = http.post(base + "/platform/auth/signup", timeout=30,
                  json={"email": email, "password": password, "display_name": display_name})
    assert r.status_code == 202, r.text
    link = mailed_link(settings, email, "/verify-email")
    token = parse_qs(urlsplit(link).query)["token"][0]
    r = http.post(base + "/platform/auth/verify-email", json={"token": token}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def alive(pid: int) -> bool:
    """Whether `pid` runs, from /proc: a zombie has exited (unlike services.shared.procs.alive,
    which counts it, as os.kill does)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(root: int) -> set[int]:
    """Every process below `root`, from /proc (children of children included)."""
    from pathlib import Path

    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {p for p, pp in parent_of.items() if pp in frontier and p not in found}
        found |= frontier
    return found
