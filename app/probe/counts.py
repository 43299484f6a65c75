"""Probe answers counted without a lock: one dict increment per answer.

Probes are answered on the HTTP event loop alone, so the counts are written
from one thread. A scrape copies the dict (one C call under the GIL), so it
never sees a half-made entry. :class:`app.metrics.Metrics` exports the copy as
``vipmon_probes_total{path,code}``.
"""

from __future__ import annotations


class ProbeCounts:
    """Answers per (route path, status code)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    def add(self, path: str, code: int) -> None:
        """Count one answer; ``path`` is the route, e.g. ``/monitor``."""
        key = (path, code)
        self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, int], int]:
        """A copy of every count so far."""
        return dict(self._counts)
