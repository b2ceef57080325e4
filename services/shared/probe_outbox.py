"""Relay wiring for the probe producer."""

from .probe import ProbeApplication, to_message
from .outbox import RelaySpec

RELAY = RelaySpec(producer="probe", application=ProbeApplication, to_message=to_message)
