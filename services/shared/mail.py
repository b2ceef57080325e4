"""The mail port and its adapters: a local outbox (default) and SMTP.

Application code depends on `Mailer`; wiring picks the adapter from settings. The outbox
writes one JSON file per message under <state_dir>/mail, which operators read with
`platformctl mail list`.
"""

from __future__ import annotations

import json
import os
import smtplib
import time
import uuid
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from .settings import Settings


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent_at: float = field(default_factory=time.time)


class Mailer(Protocol):
    def send(self, mail: Mail) -> None: ...


class OutboxMailer:
    """Writes each message to a file; nothing leaves the machine."""

    def __init__(self, directory: Path):
        self.directory = directory

    def send(self, mail: Mail) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{mail.id}.tmp"
        tmp.write_text(json.dumps(asdict(mail)))
        # Rename is atomic: a reader never sees a half-written message.
        os.replace(tmp, self.directory / f"{int(mail.sent_at * 1000):015d}-{mail.id}.json")

    def list(self) -> list[Mail]:
        if not self.directory.exists():
            return []
        return [Mail(**json.loads(p.read_text())) for p in sorted(self.directory.glob("*.json"))]


class SmtpMailer:
    def __init__(self, host: str, port: int, sender: str, *, user: str = "", password: str = "",
                 starttls: bool = False, timeout: float = 10.0):
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password, self.starttls, self.timeout = user, password, starttls, timeout

    def send(self, mail: Mail) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Message-ID"] = f"<{mail.id}@supaplatform>"
        msg.set_content(mail.body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(msg)


def outbox_dir(settings: Settings) -> Path:
    base = Path(settings.state_dir)
    if not base.is_absolute():
        base = Path(__file__).resolve().parents[2] / base
    return base / "mail"


def make_mailer(settings: Settings) -> Mailer:
    if settings.mail_backend == "smtp":
        return SmtpMailer(settings.smtp_host, settings.smtp_port, settings.mail_from, user=settings.smtp_user,
                          password=settings.smtp_password, starttls=settings.smtp_starttls)
    if settings.mail_backend == "outbox":
        return OutboxMailer(outbox_dir(settings))
    raise ValueError(f"PLATFORM_MAIL_BACKEND must be outbox or smtp, not {settings.mail_backend!r}")
