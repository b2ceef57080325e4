"""A sampling profiler inside a nameko process, for the benchmarks (`profile_dir` setting).

The kernel's profiling timer (ITIMER_PROF: every `interval` of the process's CPU time)
interrupts the process, and the signal handler, which Python runs in the main thread, counts
the stack it interrupted: under eventlet, the stack of whichever greenlet was running. So
samples fall where CPU time is spent (time waiting for I/O costs none), with no bias towards
the points where the GIL is released. A native thread turns the timer on only while
`<dir>/on` exists and files the samples under the phase that file names:
`<dir>/<phase>/<process>.txt`, in py-spy's "raw" collapsed format (`frame;frame;... count`,
outermost first), rewritten every second. Imports the standard library only (and
eventlet's `patcher`, when eventlet is loaded).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

_started = False


def _native(module: str) -> Any:
    if "eventlet" in sys.modules:
        import eventlet.patcher

        return eventlet.patcher.original(module)
    return __import__(module)


def collapse(frame: FrameType | None, root: str) -> str:
    names: list[str] = []
    while frame is not None:
        code = frame.f_code
        where = code.co_filename
        if where.startswith(root):
            where = where[len(root):]
        names.append(f"{code.co_name} ({where}:{frame.f_lineno})")
        frame = frame.f_back
    return ";".join(reversed(names))


def start(directory: str, process: str, interval: float = 0.001) -> None:
    """Start sampling this process into `directory` (once per process, from the main
    thread; a no-op when `directory` is empty)."""
    global _started
    if not directory or _started:
        return
    _started = True
    threading, native_time = _native("threading"), _native("time")
    root = str(Path(__file__).resolve().parents[2]) + "/"
    base = Path(directory)
    switch = base / "on"
    counts: Counter[str] = Counter()

    def on_tick(signum: int, frame: FrameType | None) -> None:
        counts[collapse(frame, root)] += 1

    signal.signal(signal.SIGPROF, on_tick)

    def run() -> None:
        phase = ""
        last_write = 0.0
        while True:
            native_time.sleep(0.25)
            try:
                current = switch.read_text().strip()
            except OSError:
                current = ""
            if current != phase:
                signal.setitimer(signal.ITIMER_PROF, 0)
                if phase:
                    _write(base / phase, process, dict(counts))
                counts.clear()
                phase = current
                if phase:
                    signal.setitimer(signal.ITIMER_PROF, interval, interval)
            if phase and time.monotonic() - last_write > 1.0:
                last_write = time.monotonic()
                _write(base / phase, process, dict(counts))

    threading.Thread(target=run, name="sampler", daemon=True).start()


def _write(directory: Path, process: str, counts: dict[str, int]) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{process}.{os.getpid()}.tmp"
        tmp.write_text("".join(f"{stack} {n}\n" for stack, n in counts.items()))
        tmp.replace(directory / f"{process}.txt")
    except OSError:
        pass
