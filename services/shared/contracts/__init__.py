"""Versioned message contracts: the only shapes that leave a service.

Every public message is an envelope (see `envelope.py`) around a payload whose marshmallow
schema is registered here by (event_type, schema_version). Producers build messages with
`build_message`; consumers check them with `parse_message`. Import this package, not a
module inside it: importing it registers every contract.
"""

from . import billing, functions, gateway, metering, orgs, probe, projects, provisioner, realtime  # noqa: F401  (registers contracts)
from .registry import (
    ADAPTERS,
    REGISTRY,
    Adapter,
    Contract,
    ContractError,
    OutgoingMessage,
    adapt,
    build_message,
    contract,
    event_id_for,
    get_contract,
    parse_message,
)

__all__ = [
    "ADAPTERS",
    "REGISTRY",
    "Adapter",
    "Contract",
    "ContractError",
    "OutgoingMessage",
    "adapt",
    "build_message",
    "contract",
    "event_id_for",
    "get_contract",
    "parse_message",
]
