"""What a producing service gives the relay: its application class and its mapping from
domain events to contract messages (a pure function)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from eventsourcing.application import Application

from .contracts import OutgoingMessage


@dataclass(frozen=True)
class RelaySpec:
    producer: str
    application: type[Application]
    to_message: Callable[[Any], OutgoingMessage | None]
