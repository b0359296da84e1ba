"""Passwords out of every message: `redact(text)` masks the password of every connection string.

`postgresql://user:secret@host/db` → `postgresql://user:***@host/db`; libpq keyword strings
(`password=secret`) and URL query parameters (`?password=secret`) too. `install()` puts a
filter doing this on the kit's loggers (message, arguments and traceback text); the CLI and the
outbox apply `redact` to the errors they print or raise.
"""

from __future__ import annotations

import logging
import re

__all__ = ["LOGGERS", "RedactingFilter", "install", "redact"]

MASK = "***"
_URL = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^@\s/]*)(?=@)")
_KEYWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.I)

#: the loggers of the kit (a filter on a logger does not see its children's records)
LOGGERS = ("endcall", "endcall.report", "endcall.relay", "endcall.delivery", "endcall.server")


def redact(text: str) -> str:
    """`text` with every connection-string password replaced by `***`."""
    if "://" not in text and "password" not in text.lower():
        return text
    text = _URL.sub(lambda m: m.group("head") + MASK if m.group("pw") else m.group(0), text)
    return _KEYWORD.sub(lambda m: m.group("head") + MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message or traceback holds a password; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text) != text:
                record.exc_text = redact(text)
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Add the filter to the kit's loggers (idempotent)."""
    for name in LOGGERS:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)
