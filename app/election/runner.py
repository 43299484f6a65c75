"""The election's loops: lease, campaign, members, control, tick and the history's two.

:func:`run_election` drives one :class:`Elector` until told to stop, then
resigns. A loop that ends with an exception is a bug: the election stops
(every other loop is cancelled, the node resigns and turns negative, so the
hooks run for the transition) and :class:`ElectionCrashed` is raised. The
master's duties (:meth:`app.election.handover.Handover.duties`) are started
from the control loop. Every sleep is taken from the elector's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from app.election.elector import Elector
from app.election.history import RESIGNED, Ending
from app.errors import ElectionCrashed

log = logging.getLogger("vipmon.election")

_DUTIES_PERIOD = 1.0  # s between the master's duties when no control key changed
_MEMBERS_PERIOD = 5.0  # s at most between reads of the member and control keys
_LONG_WATCH = 10.0  # s: one quiet watch (every renewal reads the leader key meanwhile)
_PRUNE_MAX = 16  # history keys the master deletes per round, at most


class Backoff:
    """Exponential retry delays with jitter, capped."""

    def __init__(self, first: float, cap: float, rng: random.Random | None = None) -> None:
        self.first, self.cap = first, cap
        self._next = first
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = self._next * (0.5 + self._rng.random() / 2)
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first


async def run_election(elector: Elector, stop: asyncio.Event) -> None:
    """Run every loop until ``stop`` is set, then resign and close the store.

    Raises :class:`ElectionCrashed` (after resigning) when a loop ends by itself.
    """
    first_read = asyncio.Event()
    tasks = [
        asyncio.create_task(_lease_loop(elector), name="lease"),
        asyncio.create_task(_campaign_loop(elector, first_read), name="campaign"),
        asyncio.create_task(_members_loop(elector, first_read), name="members"),
        asyncio.create_task(_control_loop(elector), name="control"),
        asyncio.create_task(_tick_loop(elector), name="tick"),
        asyncio.create_task(_history_writer(elector), name="history writer"),
        asyncio.create_task(_history_reader(elector), name="history reader"),
    ]
    stopped = asyncio.create_task(stop.wait(), name="stop")
    ended: list[asyncio.Task[None]] = []
    try:
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        ended = [t for t in tasks if t in done]
    finally:
        elector.request_stop()
        lease, others = tasks[0], [stopped, *tasks[1:]]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if not lease.done():  # the lease loop renews on while the release drains
            await elector.handover.release("shutting down", Ending(RESIGNED))
        lease.cancel()
        await asyncio.gather(lease, return_exceptions=True)
        await elector.resign()
        await elector.store.close()
    for task in ended:
        cause = None if task.cancelled() else task.exception()
        raise ElectionCrashed(f"the {task.get_name()} loop ended: {cause!r}") from cause


async def _lease_loop(e: Elector) -> None:
    interval = e.settings.effective_renew_interval
    backoff = Backoff(0.1, 1.0)
    while True:
        e.heartbeat = e.clock.now()
        if e.lease_id is None:
            if await e.ensure_lease():
                backoff.reset()
                await e.publish_member()
            else:
                await e.clock.sleep(backoff.next())
            continue
        wait = e.last_renew_send + interval - e.clock.now()
        if wait > 0:
            await e.clock.sleep(wait)
        if not await e.renew():
            await e.clock.sleep(min(interval / 2, 0.1))


async def _campaign_loop(e: Elector, first_read: asyncio.Event) -> None:
    backoff = Backoff(0.05, 1.0)
    # Long watches on every store: every renewal reads the leader key, and cuts the watch
    # short when it reads the key free (Elector._fold_renewal).
    with contextlib.suppress(TimeoutError):  # know the other members before the first try
        await asyncio.wait_for(first_read.wait(), timeout=2 * e.settings.lease_ttl)
    while True:
        if e.lease_id is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(e.lease_ready.wait(), timeout=0.1)
            continue
        if not e.deadline.valid(e.clock.now()) or e.handover.releasing:
            await e.clock.sleep(0.05)
            continue
        # A standby that last saw another node hold the key does not try to acquire it:
        # an acquire would win at once if that lease had just expired, ahead of every
        # higher-priority node, and on etcd it is a raft write (an fsync) even when it
        # loses. It waits for the watch or a renewal's read to show the key free.
        ok = True
        if not _stale_holder(e):
            if e.sees_key_free:
                await e.learn_how_it_ended()
                delay = e.free_key_delay()
                if delay > 0:
                    await e.clock.sleep(delay)
            ok = await e.campaign()
        if ok and _blocked(e):
            # The key is free but a control key kept us out: re-read them at once, so
            # that a switchover naming us is seen within a round trip, not a period.
            before = e.control
            ok = await e.refresh_control()
            if ok and e.control != before:
                continue
        if ok:
            ok = await e.observe(_LONG_WATCH)
        if ok:
            backoff.reset()
        else:
            await e.clock.sleep(backoff.next())


def _stale_holder(e: Elector) -> bool:
    """A standby that last saw another node hold the key: it campaigns only once the
    watch or a renewal's read shows the key free."""
    return not e.holds_key and e.leader is not None and e.leader != e.me


def _blocked(e: Elector) -> bool:
    """The last acquire lost although nobody holds the key."""
    return e.sees_key_free and e.lease_id is not None and e.deadline.valid(e.clock.now())


async def _members_loop(e: Elector, first_read: asyncio.Event) -> None:
    """Read the members and control keys, and the roster, when the watch or the tick says
    they changed (the master then keeps the roster up to date).

    And every ``_MEMBERS_PERIOD`` s at least, should a change slip past the watch.
    """
    while True:
        e.members_hint.clear()
        await e.refresh_control()
        await e.refresh_members()
        await e.roster.refresh()
        first_read.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(e.members_hint.wait(), _MEMBERS_PERIOD)


async def _control_loop(e: Elector) -> None:
    """The master's duties: at once when the watch saw a control key change, else each second.

    Only a control key change costs a read here; the members loop reads them
    too, every period, should a change ever slip past the watch.
    """
    unread = False  # a control key changed and the master has not read them since
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(e.control_hint.wait(), _DUTIES_PERIOD)
        unread = unread or e.control_hint.is_set()
        e.control_hint.clear()
        if not e.holds_key:
            unread = False
            continue
        if unread:
            if not await e.refresh_control():
                continue
            unread = False
        await e.handover.duties()


async def _history_writer(e: Elector) -> None:
    """Writes the queued history records, oldest first; the master then prunes the oldest terms.

    Nothing here is on the probe path.
    """
    backoff = Backoff(0.1, 5.0)
    while True:
        ok = True
        while ok and e.history_writes:
            key, value = e.history_writes[0]
            ok = await e.write_history(key, value)
            if ok:
                e.history_writes.popleft()
        if ok and e.holds_key and e.history.loaded:
            for _ in range(_PRUNE_MAX):
                if not await e.prune_history():
                    break
        if not ok:
            await e.clock.sleep(backoff.next())
            continue
        backoff.reset()
        e.history_hint.clear()
        if not e.history_writes:
            await e.history_hint.wait()


async def _history_reader(e: Elector) -> None:
    """Keeps the history in memory: one full read, then a watch of the history keys.

    The watch is its own, so a read by the campaign loop never moves it past a
    record. An empty answer that came back early means the store compacted
    its history past ours: read it all again.

    Its watches are long on every store: no role decision waits on the history,
    and a watch left hanging on a frozen etcd member only delays what the history
    shows, by one watch at most, since every other call moves off that member.
    """
    backoff = Backoff(0.1, 5.0)
    timeout = _LONG_WATCH
    load = True
    while True:
        if load:
            if not await e.load_history():
                await e.clock.sleep(backoff.next())
                continue
            load = False
        t_send = e.clock.now()
        events = await e.watch_history(timeout)
        if events is None:
            await e.clock.sleep(backoff.next())
            load = True
            continue
        backoff.reset()
        if not events and e.clock.now() - t_send < timeout / 2:
            load = True


async def _tick_loop(e: Elector) -> None:
    """Publishes the role at each instant time alone may change it (see ``Elector.tick``);
    wakes the members loop when a new master has yet to keep the roster up to date."""
    while True:
        if e.roster.due():
            e.members_hint.set()
        await e.clock.sleep(e.tick())
