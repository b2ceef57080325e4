"""Dependency outages as answers: while PostgreSQL or RabbitMQ (or a service behind it) is
unreachable, the gateway answers 503 with the reason and a Retry-After, not a 500, and
recovers by itself (the connection pools reconnect on the next request)."""

from __future__ import annotations

from typing import Any

RETRY_AFTER_S = 5

# Remote exception types (nameko carries the class name) and local ones that mean "a
# dependency is down", with the reason to give.
_REMOTE = {"OperationalError": "the database is unavailable", "PoolTimeout": "the database is unavailable",
           "InterfaceError": "the database is unavailable", "RpcTimeout": "a service did not answer in time",
           "UnknownService": "a service is not running"}


def outage_reason(exc: BaseException) -> str | None:
    remote = getattr(exc, "exc_type", None)
    if isinstance(remote, str) and remote in _REMOTE:
        return f"{_REMOTE[remote]} (in a service); try again shortly"
    try:
        import psycopg
        import psycopg_pool

        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)):
            return "the database is unavailable; try again shortly"
    except ImportError:  # pragma: no cover
        pass
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if name == "RpcTimeout" and str(exc):  # ours say which service and how long (TimedRpcProxy)
        return f"{exc}; try again shortly"
    if name == "UnknownService":
        return f"service {getattr(exc, '_service_name', '')} is not running; try again shortly"
    if name == "RpcTimeout" or (module.startswith(("amqp", "kombu")) and "rror" in name) or isinstance(
            exc, (ConnectionError, TimeoutError)):
        return "the message broker or a service is unavailable; try again shortly"
    return None


def headers() -> dict[str, Any]:
    return {"Retry-After": str(RETRY_AFTER_S)}
