"""Secrets at rest: AES-256-GCM with the platform's master key.

`SecretBox.encrypt(text)` returns a self-describing token `v1:<nonce+ciphertext, base64>`;
only holders of the master key can read it. The key comes from settings (secret_key) or,
on one machine with no configuration, from <state_dir>/master.key, created once with 0600.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .settings import Settings

PREFIX = "v1:"


class SecretBox:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, context: str = "") -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext.encode(), context.encode() or None)
        return PREFIX + base64.urlsafe_b64encode(nonce + ct).decode()

    def decrypt(self, token: str, context: str = "") -> str:
        if not token.startswith(PREFIX):
            raise ValueError("not an encrypted secret")
        raw = base64.urlsafe_b64decode(token[len(PREFIX):])
        return self._aead.decrypt(raw[:12], raw[12:], context.encode() or None).decode()


def master_key(settings: Settings) -> bytes:
    if settings.secret_key:
        key = base64.urlsafe_b64decode(settings.secret_key)
        if len(key) != 32:
            raise ValueError("PLATFORM_SECRET_KEY must be 32 bytes, urlsafe-base64 encoded")
        return key
    base = Path(settings.state_dir)
    if not base.is_absolute():
        base = Path(__file__).resolve().parents[2] / base
    path = base / "master.key"
    if not path.exists():
        base.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".master.key.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.urlsafe_b64encode(os.urandom(32)))
        try:
            os.link(tmp, path)  # first writer wins when processes start together
        except FileExistsError:
            pass
        tmp.unlink()
    return base64.urlsafe_b64decode(path.read_bytes().strip())


def internal_token(settings: Settings, purpose: str) -> str:
    """A bearer token for a platform-internal endpoint (e.g. the realtime server's operator
    stats), derived from the master key: platform processes share it, tenant code (which may
    reach loopback) cannot make it."""
    import hashlib
    import hmac

    return hmac.new(master_key(settings), f"internal:{purpose}".encode(), hashlib.sha256).hexdigest()


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(master_key(settings))
