"""CPU accounting for the benches, from /proc (Linux): per process, per server, whole machine."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pids_named(*names: str) -> list[int]:
    """Every process whose command name is one of `names`."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in names:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]
    return (sum(v) - idle) / CLK_TCK, sum(v) / CLK_TCK


class CpuMeter:
    """CPU used per process group between start() and stop(), for 'where the time goes'.
    PostgreSQL and RabbitMQ figures are server-wide (they include anyone else's load)."""

    def __init__(self, processes: dict[str, int]):
        self.groups = {name: [pid] for name, pid in processes.items()}
        self.groups["postgresql (all)"] = pids_named("postgres", "postmaster")
        self.groups["rabbitmq (all)"] = pids_named("beam.smp")

    def sample(self) -> dict[str, float]:
        return {g: sum(cpu_seconds(p) for p in pids) for g, pids in self.groups.items()}

    def start(self) -> None:
        self.t0, self.s0, self.m0 = time.monotonic(), self.sample(), machine_busy()

    def stop(self) -> dict[str, float]:
        wall, s1, m1 = time.monotonic() - self.t0, self.sample(), machine_busy()
        used = {g: s1[g] - self.s0[g] for g in s1}
        used["machine busy"] = m1[0] - self.m0[0]
        used["machine capacity"] = m1[1] - self.m0[1]
        used["wall"] = wall
        return used
