"""Runs an :class:`Elector` on its own thread and event loop.

Probes are served on the HTTP server's loop; the election has a loop of its
own so that a flood of probes can never queue lease renewals behind it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from app.election.elector import Elector
from app.election.runner import run_election
from app.errors import StoreUnavailable

T = TypeVar("T")

log = logging.getLogger("vipmon.election")


class ElectionThread:
    """Start, and stop with resignation, one elector in a background thread."""

    def __init__(self, elector: Elector) -> None:
        self.elector = elector
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="vipmon-election", daemon=True)
        self.crashed: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=10)

    def _main(self) -> None:
        try:
            asyncio.run(self._amain())
        except BaseException as exc:  # a bug: keep the node negative and say so
            self.crashed = exc
            self.elector.request_stop()
            log.exception("election loop crashed; this node stays negative")

    async def _amain(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        await run_election(self.elector, self._stop)

    def stop(self, timeout: float) -> bool:
        """Turn negative now, resign, and wait up to ``timeout`` s. True if it ended."""
        self.elector.request_stop()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the election loop; the caller awaits the future."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise StoreUnavailable("the election loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop)
