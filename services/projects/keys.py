"""Project API keys: Supabase's legacy anon and service_role keys are HS256 JWTs signed
with the project's JWT secret, with claims role, ref, iss, iat and exp."""

from __future__ import annotations

import secrets
from typing import Any

import jwt

ISSUER = "supabase"
TEN_YEARS = 10 * 365 * 24 * 3600


def new_jwt_secret() -> str:
    return secrets.token_urlsafe(40)


def api_key(jwt_secret: str, ref: str, role: str, issued_at: int) -> str:
    claims = {"iss": ISSUER, "ref": ref, "role": role, "iat": issued_at, "exp": issued_at + TEN_YEARS}
    return jwt.encode(claims, jwt_secret, algorithm="HS256")


def verify(token: str, jwt_secret: str) -> dict[str, Any]:
    """Claims of a key signed with this secret; raises jwt.InvalidTokenError otherwise."""
    return dict(jwt.decode(token, jwt_secret, algorithms=["HS256"], options={"require": ["exp", "iat", "role"]}))
