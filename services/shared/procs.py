"""Child processes that never outlive their parent.

`die_with_parent()` runs in a freshly forked child, before exec (as `preexec_fn`): it asks the
kernel (prctl PR_SET_PDEATHSIG) to send the child a signal the moment its parent dies, even
when the parent is killed with SIGKILL and so never gets to stop its children itself. If the
parent already died between fork and prctl, the child exits at once.

The setting belongs to the thread that forked: a child started from a thread that later ends
gets the signal then. Start supervised children from a long-lived thread (the main one).
The kernel clears it when the child changes its user or group: call it after setuid.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1

_libc = None


def _prctl():  # type: ignore[no-untyped-def]
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc.prctl


def prepare() -> int:
    """Call in the parent before forking (loads libc once, outside the child); returns the
    parent's pid for `die_with_parent`."""
    _prctl()
    return os.getpid()


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    if _prctl()(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        os._exit(127)  # cannot promise to die with the parent: do not start at all
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before prctl took effect: nobody to run for


def preexec(parent_pid: int | None = None, sig: int = signal.SIGKILL):  # type: ignore[no-untyped-def]
    parent = prepare() if parent_pid is None else parent_pid

    def run() -> None:
        die_with_parent(parent, sig)

    return run


def alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user's counts); no pid (<= 0): False."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
