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
