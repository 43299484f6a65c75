"""Logging set-up: plain text lines, or one JSON object per line.

``text``: ``<asctime> <node id> <LEVEL> <logger>: <message>``.

``json``: ``{"ts", "level", "node_id", "logger", "msg", ...}`` where ``ts`` is
ISO 8601 in UTC with milliseconds and ``node_id`` is the node that wrote the
line, followed by whichever of :data:`EXTRA_FIELDS` the call passed with
``extra=`` (``node`` is the node the line is about, e.g. a new leader), and
``exc`` with the traceback when there is one. A value JSON cannot hold is
written as its ``str()``.

Every line names its node so that nodes sharing a terminal or a log
collector can be told apart.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

TEXT_FORMAT = "%(asctime)s %(node_id)s %(levelname)s %(name)s: %(message)s"
EXTRA_FIELDS = (
    *("event", "node", "term", "from_role", "to_role", "reason", "hook", "exit_code"),
    *("client", "action", "arguments", "status", "outcome"),
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, written by node ``node_id``."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        line: dict[str, object] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "node_id": self.node_id,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str, fmt: Literal["text", "json"], node_id: str) -> None:
    """Send every log record to stderr at ``level`` (e.g. ``"info"``) in ``fmt``.

    Every line names ``node_id``, the node that writes it.

    Replaces the root logger's handlers, so calling it again reconfigures
    rather than duplicates. The ``httpx`` logger is held at WARNING.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node_id))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, defaults={"node_id": node_id}))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)  # not closed: whoever added it owns it
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
