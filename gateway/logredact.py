"""Access logs without secrets: the HTTP server's request lines (eventlet's access log, logger
`nameko.web.server`) have token-carrying query values, invitation tokens in paths and
anything shaped like a personal access token replaced by `[redacted]` before they are written."""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = r"(?:access_token|refresh_token|token|apikey|api_key|key|code|secret|password|jwt|sig|signature)"
_QUERY = re.compile(r"([?&]" + SECRET_PARAMS + r"=)[^&\s\"]*", re.IGNORECASE)
_INVITATION = re.compile(r"(/platform/invitations/)(?!accept\b)[^/?\s\"]+")
_PAT = re.compile(r"sbp_[0-9a-fA-F]{8,}")


def redact(text: str) -> str:
    text = _QUERY.sub(r"\1[redacted]", text)
    text = _INVITATION.sub(r"\1[redacted]", text)
    return _PAT.sub("sbp_[redacted]", text)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 -- a bad record is not ours to break
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def install(logger_names: tuple[str, ...] = ("nameko.web.server", "gateway")) -> None:
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in logger.filters):
            logger.addFilter(RedactFilter())
