"""The worker pool on its own, with real sandboxed Deno workers (no platform): a project
holds at most `max_per_project` warm workers, so it cannot evict every other project from
the runtime; the sandbox check refuses to start where workers could not run."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from services.functions.runtime.sandbox import Sandbox, SandboxUnavailable
from services.functions.runtime.workers import BOOTSTRAP, WorkerFailed, WorkerPool, WorkerSpec, deno_binary
from tests.conftest import ARTIFACTS

SLOW = "Deno.serve(async () => { await new Promise((r) => setTimeout(r, 60_000)); return new Response('late'); });"
FAST = "Deno.serve(() => new Response('hi'));"


def spec(code: Path, ref: str, slug: str) -> WorkerSpec:
    return WorkerSpec(ref=ref, slug=slug, version=1, code_dir=code, entrypoint_path="index.ts", import_map_path=None,
                      env=())


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder the workers' unprivileged user can traverse to (pytest's tmp_path is under a
    0700 folder)."""
    path = ARTIFACTS / "pool" / secrets.token_hex(4)
    path.mkdir(parents=True)
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox() -> Sandbox:
    made = Sandbox.create(deno=deno_binary(), bootstrap=BOOTSTRAP, user="sp-functions", insecure=False)
    assert made is not None
    return made


def test_a_project_holds_at_most_its_share_of_workers(workdir: Path, sandbox: Sandbox) -> None:
    tmp_path = workdir
    slow, fast = tmp_path / "slow", tmp_path / "fast"
    for d, src in ((slow, SLOW), (fast, FAST)):
        d.mkdir()
        (d / "index.ts").write_text(src)
    logs: list[Any] = []

    async def scenario() -> None:
        pool = WorkerPool(deno=deno_binary(), socket_dir=tmp_path / "sock", deno_dir=tmp_path / "deno", memory_mb=128,
                          idle_s=60, max_workers=10, deny_net=[], sink=lambda *a: logs.append(a), sandbox=sandbox,
                          max_per_project=2)
        await pool.start()
        busy: list[asyncio.Task[Any]] = []
        try:
            a = "aaaaaaaaaaaaaaaaaaaa"
            workers = [await pool.acquire(spec(slow, a, f"slow{i}")) for i in range(2)]
            sessions = []
            for w in workers:  # keep both busy: a request each that takes a minute
                s = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(w.socket_path)))
                sessions.append(s)
                w.inflight += 1
                busy.append(asyncio.create_task(s.get("http://worker/x")))
            # A third function of the same project: every one of its workers is busy.
            with pytest.raises(WorkerFailed) as refused:
                await pool.acquire(spec(fast, a, "third"))
            assert refused.value.code == "WORKER_LIMIT"
            assert refused.value.message == ("The project already runs 2 function workers, all busy (at most 2); "
                                             "try again shortly")
            # Another project is not affected.
            other = await pool.acquire(spec(fast, "bbbbbbbbbbbbbbbbbbbb", "hello"))
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(other.socket_path))) as s:
                async with s.get("http://worker/hello") as r:
                    assert (r.status, await r.text()) == (200, "hi")
            # Once one of the project's workers is idle, the new function replaces it.
            workers[0].inflight -= 1
            third = await pool.acquire(spec(fast, a, "third"))
            assert third.alive
            assert sum(1 for w in pool.workers.values() if w.spec.ref == a) <= 2
            for s in sessions:
                await s.close()
        finally:
            for t in busy:
                t.cancel()
            await pool.close()

    asyncio.run(scenario())


def test_the_sandbox_check_names_what_is_missing(workdir: Path, sandbox: Sandbox) -> None:
    # A state folder the workers' user cannot reach: refused at start, saying why.
    if os.geteuid() != 0:
        pytest.skip("as an ordinary user the workers run as that user, who can reach its own folders")
    locked = workdir / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(SandboxUnavailable) as why:
        sandbox.check(locked / "sock")
    assert "needs search (x) permission on every folder above" in str(why.value)


def test_no_bubblewrap_no_runtime_unless_the_operator_says_insecure(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # bwrap cannot be found
    with pytest.raises(SandboxUnavailable) as why:
        Sandbox.create(deno=deno_binary(), bootstrap=BOOTSTRAP, user="sp-functions", insecure=False)
    assert str(why.value).startswith("bubblewrap (bwrap) is not installed")
    assert "PLATFORM_FUNCTIONS_INSECURE_NO_SANDBOX" in str(why.value)
    with caplog.at_level("WARNING", logger="functions.sandbox"):
        assert Sandbox.create(deno=deno_binary(), bootstrap=BOOTSTRAP, user="sp-functions", insecure=True) is None
    assert "INSECURE" in caplog.text and "WITHOUT the operating-system sandbox" in caplog.text


def test_a_root_runtime_needs_its_unprivileged_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("only a runtime started as root drops to functions_sandbox_user")
    with pytest.raises(SandboxUnavailable) as why:
        Sandbox.create(deno=deno_binary(), bootstrap=BOOTSTRAP, user="no-such-user-here", insecure=False)
    assert "drops its workers to the system user 'no-such-user-here', which does not exist" in str(why.value)
    with pytest.raises(SandboxUnavailable) as why:
        Sandbox.create(deno=deno_binary(), bootstrap=BOOTSTRAP, user="root", insecure=False)
    assert "workers must never run as root" in str(why.value)
