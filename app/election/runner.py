"""The election's loops: lease, campaign, members, control and tick.

:func:`run_election` drives one :class:`Elector` until told to stop, then
resigns. The master's duties live here too: when the control keys name it in
a switchover or maintenance, when its local check fails and another node can
lead, or when failback is on and a higher priority can lead, it hands over
through a switchover record so that only the chosen node takes the role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import replace

from app.election.control import Switchover, campaign_delay, pick_target, switchover_key
from app.election.elector import Elector
from app.election.records import decode_leader
from app.errors import StoreError

log = logging.getLogger("vipmon.election")


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
    """Run every loop until ``stop`` is set, then resign and close the store."""
    first_read = asyncio.Event()
    tasks = [
        asyncio.create_task(_lease_loop(elector), name="lease"),
        asyncio.create_task(_campaign_loop(elector, first_read), name="campaign"),
        asyncio.create_task(_members_loop(elector, first_read), name="members"),
        asyncio.create_task(_control_loop(elector), name="control"),
        asyncio.create_task(_tick_loop(elector), name="tick"),
    ]
    try:
        await stop.wait()
    finally:
        elector.request_stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await elector.resign()
        await elector.store.close()


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
                await asyncio.sleep(backoff.next())
            continue
        wait = e.last_renew_send + interval - e.clock.now()
        if wait > 0:
            await asyncio.sleep(wait)
        if not await e.renew():
            await asyncio.sleep(min(interval / 2, 0.1))


async def _campaign_loop(e: Elector, first_read: asyncio.Event) -> None:
    backoff = Backoff(0.05, 1.0)
    watch_timeout = e.settings.lease_ttl / 2
    with contextlib.suppress(TimeoutError):  # know the other members before the first try
        await asyncio.wait_for(first_read.wait(), timeout=2 * e.settings.lease_ttl)
    while True:
        if e.lease_id is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(e.lease_ready.wait(), timeout=0.1)
            continue
        if not e.deadline.valid(e.clock.now()):
            await asyncio.sleep(0.05)
            continue
        if not e.holds_key and e.leader is None and not e.leader_unknown:
            delay = campaign_delay(
                e.settings.priority, e.settings.node_id, e.members, e.settings.priority_delay
            )
            if delay > 0:
                await asyncio.sleep(delay)
        ok = await e.campaign()
        if ok:
            ok = await e.observe(watch_timeout)
        if ok:
            backoff.reset()
        else:
            await asyncio.sleep(backoff.next())


async def _members_loop(e: Elector, first_read: asyncio.Event) -> None:
    period = max(1.0, e.settings.lease_ttl / 2)
    while True:
        await e.refresh_control()
        await e.refresh_members()
        first_read.set()
        await asyncio.sleep(period)


async def _control_loop(e: Elector) -> None:
    """The master re-reads the control keys often and acts on them."""
    duties: asyncio.Task[None] | None = None
    try:
        while True:
            await asyncio.sleep(0.2 if e.holds_key else 1.0)
            if not e.holds_key or (duties is not None and not duties.done()):
                continue
            if await e.refresh_control():
                duties = asyncio.create_task(master_duties(e))
    finally:
        if duties is not None:
            duties.cancel()
            await asyncio.gather(duties, return_exceptions=True)


async def _tick_loop(e: Elector) -> None:
    while True:
        e.tick()
        await asyncio.sleep(0.05)


async def master_duties(e: Elector) -> None:
    """Hand over if the control keys, the local check or failback say so.

    Runs under the elector's hand-over lock, so it never races an admin command
    that is handing over at the same moment.
    """
    async with e.handover_lock:
        if e.holds_key:
            await _duties(e)


async def _duties(e: Elector) -> None:
    me = e.settings.node_id
    record = e.control.switchover
    if record is not None and record.from_id == me and record.term == e.term:
        await e.release(f"switchover to {record.to_id}")
        return
    if record is not None and record.to_id == me:
        await e.clear_switchover(record)
        return
    if e.in_maintenance:
        await hand_over(e, "maintenance")
        return
    check = e.check()
    if not check.ok:
        if pick_target(e.members, exclude=me) is not None:
            await hand_over(e, f"local check failing: {check.detail}")
        return
    if e.settings.failback and not e.control.paused:
        held = e.clock.now() - e.term_started
        target = pick_target(e.members, exclude=me)
        if (
            target is not None
            and target.priority > e.settings.priority
            and held >= e.settings.failback_hold
        ):
            await hand_over(e, f"failback to higher priority {target.node_id}")


async def hand_over(e: Elector, reason: str) -> None:
    """Switch over to the best other candidate, or just release if there is none."""
    target = pick_target(e.members, exclude=e.settings.node_id)
    if target is None or e.control.paused:
        await e.release(reason)
        return
    try:
        await run_switchover(e, Switchover(e.settings.node_id, target.node_id, e.term))
    except SwitchoverFailed as exc:
        log.warning("%s: %s", reason, exc)


class SwitchoverFailed(Exception):
    """The switchover could not start or did not finish; ``reason`` says why."""


async def run_switchover(e: Elector, record: Switchover) -> tuple[int, float]:
    """Write the switchover record, release if we are the master, wait for the new term.

    Returns (new term, seconds taken). On timeout the record is removed so
    that the cluster can elect freely again. Raises SwitchoverFailed or
    StoreError.
    """
    if e.lease_id is None:
        raise SwitchoverFailed("this node holds no lease; try again")
    started = e.clock.now()
    key = switchover_key(e.settings.cluster)
    result = await e.store.acquire(key, record.encode(), e.lease_id)
    if not result.won:
        raise SwitchoverFailed("another switchover is in progress")
    written = Switchover(record.from_id, record.to_id, record.term, result.create_revision)
    e.control = replace(e.control, switchover=written)
    if e.holds_key and e.term == record.term:
        await e.release(f"switchover to {record.to_id}")
    deadline = started + e.settings.switchover_timeout
    while e.clock.now() < deadline:
        kv, _ = await e.store.get(e.key)
        holder = kv and _holder_id(kv.value)
        if kv is not None and holder == record.to_id and kv.create_revision > record.term:
            # The new master clears the record too; whoever comes first wins.
            with contextlib.suppress(StoreError):
                await e.store.resign(key, result.create_revision)
            return kv.create_revision, e.clock.now() - started
        await asyncio.sleep(0.05)
    with contextlib.suppress(StoreError):
        await e.store.resign(key, result.create_revision)
    raise SwitchoverFailed(
        f"{record.to_id} did not take the role within {e.settings.switchover_timeout:g} s; "
        "the switchover was withdrawn"
    )


def _holder_id(raw: bytes) -> str | None:
    record = decode_leader(raw)
    return record.node_id if record else None
