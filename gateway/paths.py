"""Request paths that must never reach routing: dot segments and their disguises.

`unsafe_path(raw)` is applied to the path exactly as it arrived (before any decoding) by the
gateway and by the project edge, and answered 400: a `.`/`..` segment, or one spelled with
percent-encoding (`%2e`, `%2E%2e`), a `/` or `\\` encoded inside a segment (`%2f`, `%5c`),
a backslash, a NUL, or a double encoding (`%25`, which decodes to another escape). A
proxy that routes on one spelling and forwards another (or an upstream that normalises
`/x/../status` to `/status`) would otherwise reach what the route did not name.

Imports the standard library only.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

ENCODED_SEPARATOR = re.compile(r"%(2f|5c|00)", re.I)
DOUBLE_ENCODING = re.compile(r"%25", re.I)


def unsafe_path(raw: str) -> str | None:
    """Why this raw request path (query string excluded or not) is refused, or None."""
    path = raw.split("?", 1)[0].split("#", 1)[0]
    if "\\" in path:
        return "backslashes are not allowed in request paths"
    if ENCODED_SEPARATOR.search(path):
        return "encoded '/', '\\' or NUL characters are not allowed in request paths"
    if DOUBLE_ENCODING.search(path):
        return "double-encoded characters ('%25') are not allowed in request paths"
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", ".."):
            return "'.' and '..' path segments are not allowed"
    return None
