"""Infrastructure faults versus bad messages: which errors mean "a dependency is down".

A consumer must not spend a message's retries, let alone dead-letter it, because PostgreSQL
or RabbitMQ (or a service it asks) was away: the message is fine, the world is not. So a
consumer asks `is_infrastructure_error(exc)` first. True: give the message back uncounted,
back off, and wait until the dependency answers (`consuming.BatchConsumer`,
`nameko_ext.ReliableEventHandler`). False: the message is at fault (or might be), so the
retry and dead-letter policy applies.

What counts as infrastructure: a lost or refused connection (psycopg's OperationalError
with no SQLSTATE, or one of class 08), the server shutting down or starting up (57P01,
57P02, 57P03), too many connections (53300), a connection pool that gave none in time, a
closed connection used again (InterfaceError), socket errors, AMQP connection errors, and
an RPC to another service that timed out or found it gone (or whose remote end reported one
of these). Not: a statement timeout (57014, a slow query a message may cause), constraint
violations, serialization failures and deadlocks (retried, counted), bad data. The error is
looked for along the chain of causes, since eventsourcing and nameko wrap what they catch.

Imports the standard library only; psycopg and amqp when they are there.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

# SQLSTATEs that mean the server, not the statement, is the problem.
_DOWN_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}
_DOWN_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                errno.ENETUNREACH, errno.ECONNABORTED}
# Exception class names a remote service (nameko's RemoteError.exc_type) or a wrapper may carry.
_DOWN_NAMES = {"PoolTimeout", "ConnectionUnavailableError", "RpcTimeout", "UnknownService", "InterfaceError",
               "ConnectionPoolClosedError"}


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in seen and len(seen) < 10:
        seen.append(e)
        e = e.__cause__  # explicit wrapping only (`raise ... from`): an implicit context is no cause
    return seen


def _one(e: BaseException) -> bool:
    remote = getattr(e, "exc_type", None)  # nameko RemoteError: the remote class's name
    if isinstance(remote, str):
        if remote in _DOWN_NAMES:
            return True
        if remote == "OperationalError":
            text = str(getattr(e, "value", "") or "")
            return not any(word in text for word in ("statement timeout", "canceling statement", "deadlock",
                                                     "could not serialize"))
    name = type(e).__name__
    if name in _DOWN_NAMES:
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None:
        if isinstance(e, psycopg.InterfaceError):
            return True
        if isinstance(e, psycopg.OperationalError):
            state = getattr(e, "sqlstate", None)
            return state is None or state.startswith("08") or state in _DOWN_SQLSTATES
    try:
        import amqp.exceptions as amqp_exc

        if isinstance(e, (amqp_exc.RecoverableConnectionError, amqp_exc.ConnectionError)):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(e, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    return isinstance(e, OSError) and e.errno in _DOWN_ERRNOS


def is_infrastructure_error(exc: BaseException) -> bool:
    """True if `exc` (or what it wraps) says a dependency is down, not that the work is bad."""
    return any(_one(e) for e in _causes(exc))


def describe(exc: Any) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"
