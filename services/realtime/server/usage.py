"""Realtime usage: messages (each one sent to a client and each one received, as Supabase
counts them) and peak concurrent connections per project and minute. Placeholder until the
meter is wired into the usage pipeline."""

from __future__ import annotations

from services.shared.settings import Settings

from .server import NoUsage, Usage


def build_usage(settings: Settings) -> Usage:
    return NoUsage()
