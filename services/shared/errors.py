"""Errors a service raises across RPC. The gateway maps them to HTTP by class name, in one
table (gateway/errors.py). Imports nothing."""

import contextlib
from typing import Iterator


class PlatformError(Exception):
    """Base: the message is safe to show to the caller."""

class InvalidInput(PlatformError):
    pass

class Unauthorized(PlatformError):
    pass

class Forbidden(PlatformError):
    pass

class NotFound(PlatformError):
    pass

class Conflict(PlatformError):
    pass

class Gone(PlatformError):
    """The thing existed but can no longer be used (expired, revoked, already used)."""

class LimitExceeded(PlatformError):
    """The organization's plan does not allow this; the message names the limit and the plan."""


EXPECTED = (InvalidInput, Unauthorized, Forbidden, NotFound, Conflict, Gone, LimitExceeded)
BY_NAME = {cls.__name__: cls for cls in EXPECTED}


@contextlib.contextmanager
def rules_as(violation: type[Exception], error: type[PlatformError] = Conflict) -> Iterator[None]:
    """Turn a domain's rule violation into the user-facing error (Conflict by default):
    domains raise their own exception type and know nothing of these classes."""
    try:
        yield
    except violation as exc:
        raise error(str(exc)) from None
