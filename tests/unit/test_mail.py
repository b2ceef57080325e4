"""The mail port's adapters: the local outbox, and SMTP against a real SMTP server
(aiosmtpd, run as its own process on loopback)."""

from __future__ import annotations

import mailbox
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.shared.mail import Mail, OutboxMailer, SmtpMailer, make_mailer
from services.shared.settings import load_settings
from tests.conftest import free_port
from tests.support import stop_process


def test_outbox_keeps_messages_in_order(tmp_path: Path) -> None:
    box = OutboxMailer(tmp_path / "mail")
    assert box.list() == []
    box.send(Mail(to="a@example.com", subject="one", body="first", sent_at=1.0))
    box.send(Mail(to="b@example.com", subject="two", body="second", sent_at=2.0))
    assert [(m.to, m.subject) for m in box.list()] == [("a@example.com", "one"), ("b@example.com", "two")]
    assert not list((tmp_path / "mail").glob(".*.tmp"))  # no half-written files left behind


def test_backend_is_chosen_by_settings(tmp_path: Path) -> None:
    assert isinstance(make_mailer(load_settings({"PLATFORM_STATE_DIR": str(tmp_path)})), OutboxMailer)
    smtp = make_mailer(load_settings({"PLATFORM_MAIL_BACKEND": "smtp", "PLATFORM_SMTP_PORT": "2525"}))
    assert isinstance(smtp, SmtpMailer) and smtp.port == 2525
    with pytest.raises(ValueError, match="outbox or smtp"):
        make_mailer(load_settings({"PLATFORM_MAIL_BACKEND": "pigeon"}))


def test_smtp_adapter_delivers_to_a_real_smtp_server(tmp_path: Path) -> None:
    port = free_port()
    maildir = tmp_path / "maildir"
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Mailbox", str(maildir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        mailer = SmtpMailer("127.0.0.1", port, "Platform <no-reply@example.com>", timeout=5)
        deadline = time.monotonic() + 10
        while True:  # wait for the server to listen
            try:
                mailer.send(Mail(to="invitee@example.com", subject="You're invited", body="Click the link\n"))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        messages = list(mailbox.Maildir(maildir, create=False))
        assert len(messages) == 1
        msg = messages[0]
        assert msg["To"] == "invitee@example.com" and msg["Subject"] == "You're invited"
        assert "Click the link" in msg.get_payload()
    finally:
        stop_process(server)
