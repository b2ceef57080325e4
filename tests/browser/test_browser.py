"""The dashboard in a real browser: runs the browser suite (tests/browser/suite) against the
platform this test session started.

Playwright's sync API cannot run in this process: the root conftest monkey-patches it with
eventlet (for nameko), and Playwright's asyncio loop and greenlets hang under that. So the
suite runs in its own pytest process, without the root conftest, reusing this session's
running platform (same settings, passed through the environment). Its output is kept in
artifacts/logs/<db>/browser.log, its screenshots in artifacts/screenshots/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.shared.runner import Platform, child_env
from services.shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
BUDGET_S = 600  # the whole suite, on a loaded 2-core machine (it took 400 s with 18 flows)


@pytest.mark.timeout(BUDGET_S + 180)  # the suite's own budget, plus starting and stopping it
def test_dashboard_in_chromium(settings: Settings, platform: Platform, gateway_url: str) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/ensure_infra.sh), or apt-get install chromium")
    log = ROOT / "artifacts" / "logs" / settings.db_name / "browser.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**child_env(settings), "SP_BROWSER_BASE_URL": gateway_url}
    env.pop("PYTEST_CURRENT_TEST", None)
    argv = [sys.executable, "-m", "pytest", "tests/browser/suite", "--noconftest", "-p", "tests.browser.suite.fixtures",
            "-o", "python_files=flow_*.py", "-p", "no:cacheprovider", "-x", "-q", "-rA", f"--timeout={BUDGET_S}"]
    started = time.monotonic()
    with open(log, "w") as out:
        result = subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=BUDGET_S + 60)
    text = log.read_text()
    print(f"browser suite: {time.monotonic() - started:.1f}s; log {log}")
    print(text[-3000:])
    assert result.returncode == 0, f"browser suite failed (log {log}):\n{text[-6000:]}"
