"""One line per event on stderr: ``time level event key=value ...`` or JSON.

Values come from files (names, references), so they are escaped: a value can
never add a line, a key or a field to a log line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

logger = logging.getLogger("invoice_worker")

_SAFE = re.compile(r"^[A-Za-z0-9_.:/@+\-]+$")
_SECRET_KEYS = ("password", "secret", "token")


def _text(value: Any) -> str:
    text = str(value)
    if _SAFE.match(text):
        return text
    # json.dumps escapes quotes, backslashes, CR, LF and every control character.
    return json.dumps(text, ensure_ascii=False)


class EventFormatter(logging.Formatter):
    """Formats ``event(...)`` records as text ``key=value`` pairs or as JSON."""

    def __init__(self, fmt: str = "text") -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp += f".{int(record.msecs):03d}Z"
        fields: dict[str, Any] = getattr(record, "fields", {})
        name = getattr(record, "event", None) or record.getMessage()
        if record.exc_info and "error" not in fields:
            fields = {**fields, "error": repr(record.exc_info[1])}
        if self.json:
            doc = {"time": stamp, "level": record.levelname.lower(), "event": name}
            doc.update(
                {k: v if isinstance(v, int | float | bool) else str(v) for k, v in fields.items()}
            )
            return json.dumps(doc, ensure_ascii=False)
        pairs = " ".join(f"{key}={_text(value)}" for key, value in fields.items())
        line = f"{stamp} {record.levelname:<7} {_text(name)}"
        return f"{line} {pairs}" if pairs else line


def event(name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log one event. Keys that look like secrets are masked, whatever the caller passed."""
    clean = {
        k: ("***" if any(s in k for s in _SECRET_KEYS) else v)
        for k, v in fields.items()
        if v is not None
    }
    logger.log(level, name, extra={"event": name, "fields": clean})


class _ShutdownNoise(logging.Filter):
    """watchdog logs an error when its emitter sees an event while stopping; it is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


def setup(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter(fmt))
    handler.addFilter(_ShutdownNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # dramatiq logs every retry with a traceback at WARNING; keep it but not its chatter.
    logging.getLogger("dramatiq").setLevel(logging.WARNING)
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    # asyncssh logs every step of every SFTP connection at INFO.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def redact_url(url: str | None) -> str | None:
    """A URL fit for a log line: the password replaced by ``***``."""
    if not url:
        return url
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
