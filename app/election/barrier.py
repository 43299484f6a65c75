"""The release barrier: every probe answer computed before a release has been written.

A planned release turns the node negative (it publishes a snapshot that says
so), drains, settles, and then deletes its leader key; the next master may turn
positive a few milliseconds after that delete. A probe answered from the old
snapshot just before the release could still be on its way out: its status
computed, its bytes not yet handed to the socket, because the thread that
serves probes was descheduled on a saturated host. An unplanned loss has the
lease margin to cover that; an explicit delete has only ``settle_time``, a
guess.

The barrier closes that window by construction. Probes (the HTTP server and the
agent-check responder) are served on one event loop, and each answer is
computed and written to its transport within one step of that loop, with no
``await`` in between. The election runs on a loop of its own. Before it
deletes the key, the release asks the serving loop for a round trip: a
callback scheduled there runs only after the step in progress has ended, so
every answer computed before the release published its negative snapshot has
been written by then.

If the serving loop does not answer within the time the lease has left, the
release does not delete: it abandons the lease, whose expiry keeps the full
margin.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Barrier(Protocol):
    async def passed(self, timeout: float) -> bool:
        """True once every probe answer computed before the call has been written."""
        ...


class ProbeBarrier:
    """A round trip through the loop that serves probes. Thread-safe to call.

    :meth:`bind` is called from that loop once it runs; until then (and after
    the loop has closed) no probe can be in flight, so :meth:`passed` is true
    at once.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def passed(self, timeout: float) -> bool:
        """True once the serving loop has run a callback scheduled now; False if it did
        not within ``timeout`` s (real time: the serving loop keeps no fake clock)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return True
        try:
            future = asyncio.run_coroutine_threadsafe(_turns(), loop)
        except RuntimeError:  # closed between the check and the call
            return True
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), max(timeout, 0.0))
        except TimeoutError:
            future.cancel()
            return False
        except asyncio.CancelledError:
            future.cancel()
            raise
        return True


class NoBarrier:
    """For an elector that serves no probes itself (tests, models): always passed."""

    async def passed(self, timeout: float) -> bool:
        return True


async def _turns() -> None:
    """Two turns of the serving loop: the step in progress has ended, and the writes its
    transports could not finish at once have had their turn too."""
    for _ in range(2):
        await asyncio.sleep(0)
