"""Tokens never reach the gateway's access log (the real process's log file)."""

from __future__ import annotations

import secrets

import requests

from services.shared.runner import Platform
from tests.support import wait_for


def test_tokens_in_query_strings_and_paths_are_redacted(gateway_url: str, platform: Platform) -> None:
    pat = "sbp_" + secrets.token_hex(20)
    invitation = secrets.token_urlsafe(24)
    marker = secrets.token_hex(6)
    requests.get(f"{gateway_url}/health?access_token={pat}&m={marker}", timeout=20)
    requests.get(f"{gateway_url}/platform/invitations/{invitation}?m={marker}", timeout=20)
    log = platform.log_dir / "gateway.log"
    lines = wait_for("both requests in the access log",
                     lambda: [l for l in log.read_text(errors="replace").splitlines() if marker in l]
                     if log.read_text(errors="replace").count(marker) >= 2 else None, timeout=30)
    text = "\n".join(lines)
    assert pat not in text and pat[4:] not in text, text
    assert invitation not in text, text
    assert "access_token=[redacted]" in text and "/platform/invitations/[redacted]" in text, text
