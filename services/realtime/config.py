"""A project's realtime settings, as the Management API names them
(`/v1/projects/{ref}/config/realtime`, RealtimeConfigResponse in the public spec).

This module is the one shape every part of realtime shares: the control plane records
changes to it as events (services/realtime/application.py), the server enforces it
(services/realtime/server/), the gateway validates requests against `BOUNDS`.
Pure: standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Protocol

from services.shared.realtime_bounds import BOUNDS

__all__ = ["BOUNDS", "DEFAULT", "ConfigSource", "RealtimeConfig", "StaticConfig"]



@dataclass(frozen=True)
class RealtimeConfig:
    """Defaults are Supabase's for a new project; a plan's entitlements (`realtime.max_*`)
    cap what a PATCH may set."""

    private_only: bool = False
    connection_pool: int = 2
    max_concurrent_users: int = 200
    max_events_per_second: int = 100
    max_bytes_per_second: int = 100000
    max_channels_per_client: int = 100
    max_joins_per_second: int = 100
    max_presence_events_per_second: int = 100
    max_payload_size_in_kb: int = 100
    presence_enabled: bool = True
    suspend: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, **changes: Any) -> "RealtimeConfig":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown realtime settings: {', '.join(sorted(unknown))}")
        return replace(self, **changes)


DEFAULT = RealtimeConfig()


class ConfigSource(Protocol):
    """Where the realtime server reads each project's settings, and hears of changes."""

    def get(self, ref: str) -> RealtimeConfig: ...

    def on_change(self, callback: Callable[[str, RealtimeConfig], None]) -> None: ...


class StaticConfig:
    """Settings held in memory (tests, and the server before the live feed is wired)."""

    def __init__(self, configs: dict[str, RealtimeConfig] | None = None):
        self._configs = dict(configs or {})
        self._callbacks: list[Callable[[str, RealtimeConfig], None]] = []

    def get(self, ref: str) -> RealtimeConfig:
        return self._configs.get(ref, DEFAULT)

    def set(self, ref: str, config: RealtimeConfig) -> None:
        self._configs[ref] = config
        for callback in self._callbacks:
            callback(ref, config)

    def on_change(self, callback: Callable[[str, RealtimeConfig], None]) -> None:
        self._callbacks.append(callback)
