"""Contract registry, envelope schema and message builders. Imports marshmallow only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .fastpath import FastSchema

EVENT_ID_NAMESPACE = uuid.UUID("6f0d7c1e-2b7a-4c55-9d7e-8f6a1b2c3d4e")


class ContractError(ValueError):
    """A message does not match its contract (or no contract exists for it)."""


class EnvelopeSchema(Schema):
    class Meta:
        unknown = RAISE

    event_id = fields.UUID(required=True, metadata={"description": "Unique, stable across redeliveries and replays"})
    event_type = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"), metadata={"description": "snake_case, past tense; also the routing key"})
    schema_version = fields.Integer(required=True, validate=validate.Range(min=1), metadata={"description": "Version of this event type's payload contract"})
    occurred_at = fields.AwareDateTime(required=True, format="iso", metadata={"description": "UTC time the domain event happened"})
    producer = fields.String(required=True, metadata={"description": "Service that published it; exchange is <producer>.events"})
    producer_position = fields.Integer(required=True, validate=validate.Range(min=1), metadata={"description": "Position in the producer's event log (monotonic per producer)"})
    org_id = fields.String(required=True, allow_none=True, metadata={"description": "Slug of the organization concerned, if any"})
    project_ref = fields.String(required=True, allow_none=True, metadata={"description": "Ref of the project concerned, if any"})
    correlation_id = fields.String(required=True, allow_none=True, metadata={"description": "Id of the request that started the chain (the gateway's request id)"})
    causation_id = fields.String(required=True, allow_none=True, metadata={"description": "Id of the request or message that directly caused this event"})
    payload = fields.Dict(required=True, metadata={"description": "The event's data, shaped by its (event_type, schema_version) contract"})


@dataclass(frozen=True)
class Contract:
    event_type: str
    schema_version: int
    producer: str
    schema: type[Schema]
    description: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.event_type, self.schema_version)

    def schema_instance(self) -> Schema:
        """A shared instance of the payload schema. Building a marshmallow schema deep-copies
        its fields (most of the cost of checking one small message), and a schema keeps no
        per-call state, so one instance serves every message and thread."""
        return self.fast_schema().schema

    def fast_schema(self) -> FastSchema:
        fast = _FAST_SCHEMAS.get(self.schema)
        if fast is None:
            fast = _FAST_SCHEMAS.setdefault(self.schema, FastSchema(self.schema()))
        return fast


_FAST_SCHEMAS: dict[type[Schema], FastSchema] = {}


REGISTRY: dict[tuple[str, int], Contract] = {}
_ENVELOPE = FastSchema(EnvelopeSchema())  # shared: see Contract.schema_instance


def contract(event_type: str, version: int, producer: str, description: str) -> Callable[[type[Schema]], type[Schema]]:
    """Class decorator registering a payload schema as a public contract."""

    def register(schema_cls: type[Schema]) -> type[Schema]:
        key = (event_type, version)
        if key in REGISTRY:
            raise RuntimeError(f"contract {key} registered twice")
        REGISTRY[key] = Contract(event_type, version, producer, schema_cls, description)
        return schema_cls

    return register


@dataclass(frozen=True)
class Adapter:
    """How a consumer of an older version reads a newer message: version `from_version` is
    version `to_version` plus the fields `added` (an additive change), so dropping them gives
    a valid older payload. Declarative, so the AsyncAPI document carries it to outside
    consumers too (`x-adapts-to`)."""

    event_type: str
    from_version: int
    to_version: int
    added: tuple[str, ...]

    def apply(self, env: dict[str, Any]) -> dict[str, Any]:
        payload = {k: v for k, v in env["payload"].items() if k not in self.added}
        return {**env, "schema_version": self.to_version, "payload": payload}


ADAPTERS: dict[tuple[str, int], Adapter] = {}


def adapter(event_type: str, from_version: int, to_version: int, added: tuple[str, ...]) -> None:
    """Register the downgrade of `event_type` v`from_version` to v`to_version`."""
    for v in (from_version, to_version):
        if (event_type, v) not in REGISTRY:
            raise RuntimeError(f"adapter for unregistered contract {event_type} v{v}")
    ADAPTERS[(event_type, from_version)] = Adapter(event_type, from_version, to_version, added)


def adapt(env: dict[str, Any], accept: Iterable[int]) -> dict[str, Any]:
    """The envelope in a version the consumer accepts: as it is, or down the adapter chain."""
    wanted = set(accept)
    seen = env
    while seen["schema_version"] not in wanted:
        step = ADAPTERS.get((seen["event_type"], seen["schema_version"]))
        if step is None:
            raise ContractError(f"{env['event_type']} v{env['schema_version']} is not accepted "
                                f"(accepts v{', v'.join(map(str, sorted(wanted)))}) and has no adapter to them")
        seen = step.apply(seen)
    return seen


def get_contract(event_type: str, version: int) -> Contract:
    try:
        return REGISTRY[(event_type, version)]
    except KeyError:
        raise ContractError(f"no contract for {event_type} v{version}") from None


@dataclass(frozen=True)
class OutgoingMessage:
    """What a service's outbox mapping returns for one public domain event."""

    event_type: str
    schema_version: int
    payload: dict[str, Any]
    org_id: str | None = None
    project_ref: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def event_id_for(producer: str, originator_id: uuid.UUID, originator_version: int) -> uuid.UUID:
    """Deterministic: the same stored event always gets the same event_id."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{producer}:{originator_id}:{originator_version}")


def build_message(
    out: OutgoingMessage,
    *,
    event_id: uuid.UUID,
    producer: str,
    producer_position: int,
    occurred_at: datetime,
) -> dict[str, Any]:
    """Validate the payload against its contract and wrap it in the envelope (JSON-ready)."""
    c = get_contract(out.event_type, out.schema_version)
    if c.producer != producer:
        raise ContractError(f"{out.event_type} is produced by {c.producer}, not {producer}")
    fast = c.fast_schema()
    # One load both validates and normalises; dumping its result gives JSON-ready data.
    loaded = fast.load(out.payload)
    if loaded is None:  # not certain: marshmallow decides, and says what is wrong
        try:
            loaded = fast.schema.load(out.payload)
        except ValidationError as e:
            raise ContractError(f"{out.event_type} v{out.schema_version} payload invalid: {e.messages}") from None
    payload = fast.dump(loaded)
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=timezone.utc)
    envelope = {
        "event_id": str(event_id),
        "event_type": out.event_type,
        "schema_version": out.schema_version,
        "occurred_at": occurred_at.astimezone(timezone.utc).isoformat(),
        "producer": producer,
        "producer_position": producer_position,
        "org_id": out.org_id,
        "project_ref": out.project_ref,
        "correlation_id": out.correlation_id,
        "causation_id": out.causation_id,
        "payload": payload,
    }
    return envelope


def parse_message(body: dict[str, Any], accept: Iterable[int] | None = None) -> dict[str, Any]:
    """Check an incoming message: envelope and payload. Returns it with a loaded payload.
    With `accept` (the contract versions the consumer understands), a newer message is first
    adapted down to one of them (see Adapter), then checked against that version.

    Raises ContractError with every problem found.
    """
    if not isinstance(body, dict):
        raise ContractError("message body is not a JSON object")
    env = _ENVELOPE.load(body)
    if env is None:  # not certain: marshmallow decides, and says what is wrong
        try:
            env = _ENVELOPE.schema.load(body)
        except ValidationError as e:
            raise ContractError(f"envelope invalid: {e.messages}") from None
    if accept is not None:
        get_contract(env["event_type"], env["schema_version"])  # an unknown version stays an error
        env = adapt(env, accept)
    c = get_contract(env["event_type"], env["schema_version"])
    if c.producer != env["producer"]:
        raise ContractError(f"{c.event_type} must come from {c.producer}, not {env['producer']}")
    fast = c.fast_schema()
    payload = fast.load(env["payload"])
    if payload is None:
        try:
            payload = fast.schema.load(env["payload"])
        except ValidationError as e:
            raise ContractError(f"{c.event_type} v{c.schema_version} payload invalid: {e.messages}") from None
    env["payload"] = payload
    env["event_id"] = str(env["event_id"])
    return env
