"""Errors a service raises across RPC. The gateway maps them to HTTP by class name, in one
table (gateway/errors.py). Imports nothing."""

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
