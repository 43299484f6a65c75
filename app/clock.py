"""Clocks. Leadership is measured on a monotonic clock only.

:class:`MonotonicClock` reads ``CLOCK_BOOTTIME`` on Linux: like
``CLOCK_MONOTONIC`` it never jumps with the wall clock and every process on
the host reads the same clock (the embedded store relies on that), but it also
counts the time the host spent suspended, so a deadline taken before a suspend
has passed after the resume. Elsewhere it falls back to ``time.monotonic()``.

:class:`FakeClock` is the test seam for the election logic: it moves only when
told to, and its :meth:`FakeClock.sleep` wakes when the clock is advanced past
the sleeper's instant. Every sleep of the election goes through the clock, so a
fake clock drives drains, settle times and loop periods in tests.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Protocol

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)
_EPSILON = 1e-9  # float rounding: a sleeper due "now" must wake


class Clock(Protocol):
    """Anything that tells monotonic seconds and can sleep on them."""

    def now(self) -> float:
        """Return monotonic seconds; never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class MonotonicClock:
    """The real clock: ``CLOCK_BOOTTIME`` where the system has it."""

    def now(self) -> float:
        if _BOOTTIME is not None:
            return time.clock_gettime(_BOOTTIME)
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to; sleepers wake as it passes their instant."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def next_wake(self) -> float | None:
        """The earliest instant a sleeper waits for, or None."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now + _EPSILON:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        # A sleep too short to move a float clock still waits for the next instant.
        due = max(self._now + seconds, math.nextafter(self._now, math.inf))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (due, next(self._order), waiter))
        await waiter
