"""Which setting and attribute names hold secrets: the one rule for history redaction and for
the auth settings kept encrypted at rest. Imports the standard library only."""

from __future__ import annotations

# Encrypted or hashed values, tokens, passwords, OAuth client secrets, hook secrets, SMS
# providers' keys (GoTrue's auth settings: smtp_pass, external_*_secret, hook_*_secrets,
# security_captcha_secret, sms_twilio_auth_token, sms_vonage_api_key, ...).
SECRET_SUFFIXES = ("_enc", "_hash", "_secret", "_secrets", "_secret_key", "_token", "_pass", "_access_key",
                   "_api_key")


def is_secret_name(name: str) -> bool:
    return name.lower().endswith(SECRET_SUFFIXES)


# Secret auth settings at rest: SEALED_PREFIX + the master key's token (services/shared/crypto.py),
# bound to the project (`auth_secret_context`).
SEALED_PREFIX = "enc:"


def auth_secret_context(ref: str) -> str:
    """What a project's sealed auth secrets are bound to: a value copied into another project
    does not decrypt there."""
    return f"{ref}:auth"
