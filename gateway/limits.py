"""Input limits before work: a JSON body is refused above its route's size limit from
Content-Length, and while it streams in (chunked bodies have no Content-Length), before it
is buffered; bodies that are not JSON objects (wrong content type, invalid UTF-8, nesting
deeper than MAX_DEPTH) are 400s, never 500s."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request

from .errors import HttpError

DEFAULT_BODY_LIMIT = 1024 * 1024
# Routes whose JSON bodies may be larger (or must be smaller) than the default, by endpoint.
BODY_LIMITS: dict[str, int] = {
    "signin": 16 * 1024,
    "signup": 16 * 1024,
    "change_password": 16 * 1024,
    "verify_email": 4 * 1024,
    "request_email_verification": 4 * 1024,
}
MAX_DEPTH = 64
# JSON, or what curl -d sends by default (the README's examples); anything else is refused.
ACCEPTED_TYPES = {"", "application/json", "text/plain", "application/x-www-form-urlencoded"}


def limit_for(request: Request) -> int:
    endpoint = getattr(request, "url_rule", None)
    name = endpoint.endpoint if endpoint is not None else request.environ.get("sp.endpoint")
    return BODY_LIMITS.get(str(name), DEFAULT_BODY_LIMIT)


def read_body(request: Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise HttpError(413, f"request body too large (at most {limit} bytes)")
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return b""
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(65536, limit + 1 - total)) if length is None else stream.read(
            min(65536, length - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise HttpError(413, f"request body too large (at most {limit} bytes)")
        if length is not None and total >= length:
            break
    return b"".join(chunks)


def _depth_ok(raw: bytes) -> bool:
    depth = 0
    in_string = escaped = False
    for b in raw:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif b in (0x5D, 0x7D):
            depth -= 1
    return True


def parse_json_object(request: Request, limit: int) -> dict[str, Any]:
    ctype = (request.mimetype or "").lower()
    if ctype not in ACCEPTED_TYPES and not ctype.endswith("+json"):
        raise HttpError(400, f"request body must be JSON (Content-Type: application/json), not {ctype}")
    raw = read_body(request, limit)
    if not _depth_ok(raw):
        raise HttpError(400, f"malformed JSON: nested deeper than {MAX_DEPTH} levels")
    try:
        text = raw.decode("utf-8") if raw else "null"
    except UnicodeDecodeError:
        raise HttpError(400, "malformed JSON: not valid UTF-8") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise HttpError(400, f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise HttpError(400, "request body must be a JSON object")
    return data


def json_body(request: Request, limit: int) -> Any:
    """The request's JSON body as the route handlers read it (null when empty): 413 when its
    Content-Length is over `limit`, 400 when it is not JSON. Unlike parse_json_object, no
    Content-Type or depth check and any JSON value (the caller's schema decides)."""
    if request.content_length and request.content_length > limit:
        raise HttpError(413, "request body too large")
    try:
        return json.loads(request.get_data(cache=False) or b"null")
    except ValueError as e:
        raise HttpError(400, f"malformed JSON: {e}") from None


def load_object(schema: Any, data: Any) -> dict[str, Any]:
    """`data` (a JSON object) loaded by the marshmallow `schema`; 400 with the field messages otherwise."""
    from marshmallow import ValidationError

    if not isinstance(data, dict):
        raise HttpError(400, "request body must be a JSON object")
    try:
        return dict(schema.load(data))
    except ValidationError as e:
        raise HttpError.invalid(e.messages) from None
