"""The one table that maps service errors (by class name) to HTTP statuses, and the
gateway's own HTTP error (with per-field messages for forms)."""

from __future__ import annotations

from typing import Any

STATUS_BY_ERROR: dict[str, int] = {
    "InvalidInput": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "Conflict": 409,
    "Gone": 410,
    "LimitExceeded": 402,
}


class HttpError(Exception):
    def __init__(self, status: int, message: str, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields

    @classmethod
    def invalid(cls, messages: Any) -> "HttpError":
        fields = _flatten(messages)
        text = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        return cls(400, text or "invalid input", fields)


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for k, v in messages.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix.rstrip(".") or "_"] = list(messages)
    elif isinstance(messages, list):
        for i, m in enumerate(messages):
            out.update(_flatten(m, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".") or "_"] = [str(messages)]
    return out


def from_remote(exc_type: str | None, message: str) -> HttpError | None:
    status = STATUS_BY_ERROR.get(exc_type or "")
    if not status:
        return None
    fields = None
    # Services phrase input errors "field: problem": keep the field for forms.
    field, sep, problem = message.partition(": ")
    if status == 400 and sep and field.isidentifier():
        fields = {field: [problem]}
    return HttpError(status, message, fields)
