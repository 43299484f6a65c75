"""In-process simulation seams: a store relay and an event loop on a fake clock.

* :class:`Relay` passes every store call to an inner store through one hook,
  :meth:`Relay.call`, where a test can hold a call, lose its reply or delay it.
* :func:`virtual_time_loop` is an asyncio loop whose time is a
  :class:`~app.clock.FakeClock`: when every task waits, the clock jumps to the
  next timer (or the next :meth:`~app.clock.FakeClock.sleep` wake-up) instead of
  sleeping. The election's real loops
  (:func:`app.election.runner.run_election`) then run seconds of cluster time
  in milliseconds, with no real I/O (the in-memory store only).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from app.clock import FakeClock
from app.store.base import AcquireResult, KeyValue, LeaseGrant, Put, Store, WatchEvent

T = TypeVar("T")


class Relay(Store):
    """A store that forwards each call to ``inner`` through :meth:`call`."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name

    async def call(self, op: str, send: Callable[[], Awaitable[Any]]) -> Any:
        """Send one call; override to hold, lose or delay it."""
        return await send()

    async def grant(self, ttl: int) -> LeaseGrant:
        return await self.call("grant", lambda: self.inner.grant(ttl))

    async def keepalive(self, lease_id: int) -> float:
        return await self.call("keepalive", lambda: self.inner.keepalive(lease_id))

    async def revoke(self, lease_id: int) -> None:
        await self.call("revoke", lambda: self.inner.revoke(lease_id))

    async def acquire(
        self,
        key: str,
        value: bytes,
        lease_id: int,
        absent: Sequence[str] = (),
        same: Mapping[str, int] | None = None,
    ) -> AcquireResult:
        return await self.call(
            "acquire", lambda: self.inner.acquire(key, value, lease_id, absent, same)
        )

    async def resign(
        self,
        key: str,
        create_revision: int,
        puts: Sequence[Put] = (),
        absent: Sequence[str] = (),
    ) -> bool:
        return await self.call(
            "resign", lambda: self.inner.resign(key, create_revision, puts, absent)
        )

    async def put(self, key: str, value: bytes, lease_id: int) -> None:
        await self.call("put", lambda: self.inner.put(key, value, lease_id))

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        return await self.call("get", lambda: self.inner.get(key))

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        return await self.call("get_prefix", lambda: self.inner.get_prefix(prefix))

    async def watch(
        self, key: str, start_revision: int, timeout: float, prefix: bool = False
    ) -> list[WatchEvent]:
        return await self.call(
            "watch", lambda: self.inner.watch(key, start_revision, timeout, prefix)
        )

    async def close(self) -> None:
        await self.inner.close()


class _JumpSelector(selectors.SelectSelector):
    """Never waits: a select with a timeout moves the fake clock by that timeout."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        wake = self.clock.next_wake()  # a task asleep on the clock itself
        if wake is not None:
            until_wake = max(0.0, wake - self.clock.now())
            timeout = until_wake if timeout is None else min(timeout, until_wake)
        if timeout is None:
            raise RuntimeError("every task waits and no timer is set: the simulation is stuck")
        if timeout > 0 or wake is not None:
            self.clock.advance(timeout)  # advance(0) wakes a sleeper that is due now
        return []


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(_JumpSelector(clock))
        self._clock = clock

    def time(self) -> float:
        return self._clock.now()


def virtual_time_loop(clock: FakeClock) -> asyncio.AbstractEventLoop:
    """A new event loop on ``clock``; close it when done."""
    return _VirtualTimeLoop(clock)


def run_virtual(clock: FakeClock, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh virtual-time loop on ``clock``."""
    loop = virtual_time_loop(clock)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
