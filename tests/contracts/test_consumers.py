"""Every consumer accepts every golden sample it subscribes to, on a real throwaway database.

Subscriptions are discovered, not listed: the `ReliableEventHandler` entrypoints of every
nameko service (each declares producer, event type and versions) and the `ACCEPTS` of every
batch consumer module. Each handler runs with its real dependencies (the service's own
`ApplicationProvider` factories) and its effect is applied twice to prove idempotency.
"""

from __future__ import annotations

import ast
import copy
import importlib
import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterator

import pytest
from nameko.events import EventHandler
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.testing.services import worker_factory

from services.billing.bootstrap import build as build_billing
from services.metering import consumer as metering_consumer
from services.shared import broker, probe_consumer
from services.shared.contracts import ADAPTERS, REGISTRY, Adapter, Contract, ContractError, parse_message
from services.shared.db import connect as db_connect
from services.shared.nameko_ext import ApplicationProvider, ReliableEventHandler
from services.shared.settings import Settings
from tests.conftest import ROOT

from .support import sample_for

Key = tuple[str, str, int]  # (producer, event_type, schema_version)


# -- discovery --------------------------------------------------------------------------------

@dataclass(frozen=True)
class NamekoHandler:
    service: type
    method: str
    entrypoint: EventHandler

    @property
    def label(self) -> str:
        return f"{self.service.name}.{self.method}"  # type: ignore[attr-defined]


def _service_modules() -> list[str]:
    paths = sorted(ROOT.glob("services/*/service.py")) + [ROOT / "gateway" / "service.py"]
    return [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in paths]


def nameko_handlers() -> list[NamekoHandler]:
    found = []
    for name in _service_modules():
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not (isinstance(cls, type) and cls.__module__ == name and hasattr(cls, "name")):
                continue
            for method, fn in vars(cls).items():
                for ep in getattr(fn, ENTRYPOINT_EXTENSIONS_ATTR, ()):
                    if isinstance(ep, EventHandler):
                        found.append(NamekoHandler(cls, method, ep))
    return found


# Modules that run a BatchConsumer: each declares ACCEPTS and make_consumer(settings, queue=...).
BATCH_CONSUMERS: dict[str, ModuleType] = {"services.shared.probe_consumer": probe_consumer,
                                           "services.metering.consumer": metering_consumer}


def _modules_building_batch_consumers() -> set[str]:
    found = set()
    for path in (ROOT / "services").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if "BatchConsumer" not in source:
            continue
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "BatchConsumer":
                found.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


HANDLERS = nameko_handlers()
NAMEKO_CASES = [(h, key) for h in HANDLERS if isinstance(h.entrypoint, ReliableEventHandler)
                for key in h.entrypoint.accepts]
BATCH_CASES = [(name, key) for name, module in BATCH_CONSUMERS.items() for key in module.ACCEPTS]


def all_subscriptions() -> Iterator[tuple[str, Key]]:
    for h, key in NAMEKO_CASES:
        yield h.label, key
    for name, key in BATCH_CASES:
        yield name, key


# -- what every consumer must declare ---------------------------------------------------------

def test_consumers_are_discovered() -> None:
    assert ("billing.on_organization_created", ("orgs", "organization_created", 1)) in set(all_subscriptions())
    assert ("services.shared.probe_consumer", ("probe", "probe_recorded", 1)) in set(all_subscriptions())


def test_every_nameko_event_handler_is_reliable() -> None:
    # nameko's plain handler acks a message whose handler raised: it would be lost.
    plain = [h.label for h in HANDLERS if not isinstance(h.entrypoint, ReliableEventHandler)]
    assert not plain, f"use services.shared.nameko_ext.reliable_handler instead of event_handler in {plain}"


def test_every_batch_consumer_is_known_here() -> None:
    unknown = _modules_building_batch_consumers() - set(BATCH_CONSUMERS) - {"services.shared.consuming"}
    assert not unknown, f"add these batch consumers to BATCH_CONSUMERS (with ACCEPTS): {sorted(unknown)}"


@pytest.mark.parametrize("consumer,key", list(all_subscriptions()),
                         ids=[f"{c}-{k[0]}/{k[1]}.v{k[2]}" for c, k in all_subscriptions()])
def test_subscription_names_a_registered_contract_of_that_producer(consumer: str, key: Key) -> None:
    producer, event_type, version = key
    c: Contract | None = REGISTRY.get((event_type, version))
    assert c is not None, f"{consumer} subscribes to {event_type} v{version}, which no contract defines"
    assert c.producer == producer, f"{consumer} expects {event_type} from {producer}; it comes from {c.producer}"


# -- acceptance: nameko handlers --------------------------------------------------------------

@pytest.fixture(scope="module")
def real_dependencies(contract_db: Settings) -> Iterator[dict[type, dict[str, Any]]]:
    """Each consuming service's dependencies, built by its own providers on the test DB."""
    built: dict[type, dict[str, Any]] = {}
    for h, _ in NAMEKO_CASES:
        if h.service not in built:
            built[h.service] = {name: attr.factory(contract_db) for name, attr in vars(h.service).items()
                                if isinstance(attr, ApplicationProvider)}
    yield built
    for deps in built.values():
        for dep in deps.values():
            close = getattr(dep, "close", None)
            if callable(close):
                close()


@pytest.mark.parametrize("handler,key", NAMEKO_CASES, ids=[f"{h.label}-{k[1]}.v{k[2]}" for h, k in NAMEKO_CASES])
def test_nameko_handler_accepts_its_samples(handler: NamekoHandler, key: Key,
                                            real_dependencies: dict[type, dict[str, Any]]) -> None:
    producer, event_type, version = key
    ep = handler.entrypoint
    assert isinstance(ep, ReliableEventHandler)
    # The same check the entrypoint runs on a delivery (bytes off the wire).
    envelope = ep.accept(json.dumps(sample_for(event_type, version)).encode())
    worker = worker_factory(handler.service, **real_dependencies[handler.service])
    method = getattr(worker, handler.method)
    method(copy.deepcopy(envelope))
    method(copy.deepcopy(envelope))  # a redelivery must be harmless


def test_reliable_handler_refuses_a_version_it_did_not_declare(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend orgs already publishes a v2: billing's v1-only handler must park it, not misread it.
    v1 = REGISTRY[("organization_created", 1)]
    monkeypatch.setitem(REGISTRY, ("organization_created", 2), Contract("organization_created", 2, "orgs", v1.schema, "test"))
    billing = next(h for h in HANDLERS if h.label == "billing.on_organization_created").entrypoint
    assert isinstance(billing, ReliableEventHandler)
    message = {**sample_for("organization_created", 1), "schema_version": 2}
    parse_message(copy.deepcopy(message))  # a valid v2 message...
    with pytest.raises(ContractError, match=r"organization_created v2 is not accepted \(accepts v1\) and has no adapter"):
        billing.accept(message)  # ...that this handler does not understand


def test_a_v1_only_handler_reads_a_v2_message_through_its_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    # A v2 that adds a field, with its adapter: billing's v1-only handler keeps working.
    from marshmallow import fields as mf

    v1 = REGISTRY[("organization_created", 1)]
    v2_schema = type("OrganizationCreatedV2", (v1.schema,), {"region": mf.String(required=True)})
    monkeypatch.setitem(REGISTRY, ("organization_created", 2), Contract("organization_created", 2, "orgs", v2_schema, "test"))
    monkeypatch.setitem(ADAPTERS, ("organization_created", 2), Adapter("organization_created", 2, 1, ("region",)))
    billing = next(h for h in HANDLERS if h.label == "billing.on_organization_created").entrypoint
    sample = sample_for("organization_created", 1)
    message = {**sample, "schema_version": 2, "payload": {**sample["payload"], "region": "eu-west-1"}}
    envelope = billing.accept(copy.deepcopy(message))
    assert envelope["schema_version"] == 1 and envelope["payload"] == parse_message(sample)["payload"]
    assert envelope["event_id"] == sample["event_id"]  # the same event, read in the version it understands


def test_billing_starts_one_free_subscription_per_organization_created(contract_db: Settings) -> None:
    sample = parse_message(sample_for("organization_created", 1))
    billing = build_billing(contract_db)
    try:
        billing.reset_index()
        assert billing.start_subscription(sample) is True
        assert billing.start_subscription(sample) is False  # same event_id: already applied
        got = billing.get_subscription(sample["payload"]["slug"])
        assert got["plan"] == "free" and got["org_slug"] == "acme-inc"
        assert billing.index.get("acme-inc")["plan"] == "free"
        # The aggregate is the truth: a rebuilt index row comes back from it.
        billing.reset_index()
        assert billing.start_subscription(sample) is True and billing.index.get("acme-inc")["plan"] == "free"
    finally:
        billing.close()


# -- acceptance: batch consumers --------------------------------------------------------------

@pytest.mark.parametrize("module_name,key", BATCH_CASES, ids=[f"{m}-{k[1]}.v{k[2]}" for m, k in BATCH_CASES])
def test_batch_consumer_accepts_its_samples(module_name: str, key: Key, contract_db: Settings) -> None:
    producer, event_type, version = key
    consumer = BATCH_CONSUMERS[module_name].make_consumer(contract_db, queue=f"contracts.{module_name}")
    assert (broker.exchange_name(producer), event_type) in consumer.bindings, "queue not bound to what it accepts"
    envelope = parse_message(sample_for(event_type, version))  # what the consumer decodes from the wire
    with db_connect(contract_db, autocommit=True) as db:
        consumer._apply(db, [envelope])
        consumer._apply(db, [copy.deepcopy(envelope)])  # a redelivery is deduplicated
    assert consumer.applied == 1


def test_probe_consumer_effect_is_applied_once(contract_db: Settings) -> None:
    consumer = probe_consumer.make_consumer(contract_db, queue="contracts.probe-effect")
    envelope = parse_message(sample_for("probe_recorded", 1))
    with db_connect(contract_db, autocommit=True) as db:
        consumer._apply(db, [envelope])
        consumer._apply(db, [envelope])
        row = db.execute("SELECT applied FROM probe.probe_effects WHERE consumer = %s AND run_id = %s AND seq = %s",
                         (consumer.queue, envelope["payload"]["run_id"], envelope["payload"]["seq"])).fetchone()
    assert row == (1,)
