"""Clocks. Leadership is measured on a monotonic clock only.

:class:`MonotonicClock` reads ``time.monotonic()``, which on Linux is the
system-wide ``CLOCK_MONOTONIC``: every process on the host reads the same
clock, which the embedded store relies on. :class:`FakeClock` is the test seam
for the election logic.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything that tells monotonic seconds."""

    def now(self) -> float:
        """Return monotonic seconds; never goes backwards."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic()``."""

    def now(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self._now += seconds
