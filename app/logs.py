"""Logging set-up: plain text lines, or one JSON object per line.

``text``: ``<asctime> <LEVEL> <logger>: <message>``.

``json``: ``{"ts", "level", "logger", "msg", ...}`` where ``ts`` is ISO 8601
in UTC with milliseconds, followed by whichever of :data:`EXTRA_FIELDS` the
call passed with ``extra=``, and ``exc`` with the traceback when there is one.
A value JSON cannot hold is written as its ``str()``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXTRA_FIELDS = (
    *("event", "node", "term", "from_role", "to_role", "reason", "hook", "exit_code"),
    *("client", "action", "arguments", "status", "outcome"),
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        line: dict[str, object] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, fmt: Literal["text", "json"]) -> None:
    """Send every log record to stderr at ``level`` (e.g. ``"info"``) in ``fmt``.

    Replaces the root logger's handlers, so calling it again reconfigures
    rather than duplicates. The ``httpx`` logger is held at WARNING.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)  # not closed: whoever added it owns it
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
