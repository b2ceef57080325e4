"""The one table that maps service errors (by class name) to HTTP statuses."""

from __future__ import annotations

STATUS_BY_ERROR: dict[str, int] = {
    "InvalidInput": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "Conflict": 409,
}


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def from_remote(exc_type: str | None, message: str) -> HttpError | None:
    status = STATUS_BY_ERROR.get(exc_type or "")
    return HttpError(status, message) if status else None
