"""Every planned release of the master role, in one place.

A planned release is a switchover (asked by an operator, or by the master's
own duties: a switchover record naming it, maintenance, a failing local check,
failback) or the resignation on SIGTERM. All of them run one protocol,
:meth:`Handover.release`:

1. **Capture** the term to give up, before anything else happens.
2. **Turn negative and stay so.** The node enters the *releasing* state: it
   answers ``ROLE=DRAINING`` while it still holds the captured key (negative
   in any case), and :meth:`~app.election.elector.Elector.campaign` refuses
   to run, so no new term can be won in the middle of a release.
3. **Drain** for ``drain_time``: the key is kept and the lease renewed, so an
   ADC that reads ``DRAINING`` stops new connections while old ones finish. With
   a kernel fence (:mod:`app.fence`) new connections are refused from step 2, and
   established ones from the end of the drain; the key is deleted only once the
   kernel confirmed both closed.
4. **Settle** for ``settle_time``, then pass the **release barrier**
   (:mod:`app.election.barrier`): a round trip through the loop that serves
   probes, so that every positive answer computed before step 2 has been
   written before anyone else can turn positive. If that loop does not answer
   while the lease is still valid, the lease is abandoned and expires instead,
   with its margin.
5. **Delete the captured term only**, in a transaction guarded by its
   ``create_revision``: a term won by anybody after the capture is never
   touched. If the delete fails, the lease is abandoned and expires instead.
6. Leave the releasing state. A release that is cancelled or fails on the way
   abandons its lease first, so that leaving the state can never make the
   node positive for a key it may have deleted.

A switchover (:meth:`Handover.switchover`) writes its record
``/vipmon/<cluster>/control/switchover`` on a lease of its own, granted for
``switchover_timeout + lease_ttl`` and never renewed: the record blocks every
node but the target, and it goes in a ``finally`` (the lease is revoked), or
by itself when that lease runs out, so no failed read, crash or partition
can leave it behind to block the cluster. Asked of the master, the record's
lease is granted during the release and the record goes in with step 5's
delete, in one transaction (:meth:`Handover._delete_with_record`): the target
acquires on that watch event, two commits after the drain. Asked of another
node, the record is written first, and the master's duties release.

This module owns the hand-over's state (``releasing_term``) and its lock; the
elector reads them. Sleeps are taken from the elector's clock, so a fake clock
drives drains and settle times in tests.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from app.election.control import (
    Switchover,
    can_lead,
    decode_control,
    pick_target,
    switchover_key,
)
from app.election.history import (
    CHECK_FAILING,
    FAILBACK,
    MAINTENANCE,
    RESIGNED,
    SWITCHOVER,
    Ending,
)
from app.election.records import decode_leader, decode_member, member_key
from app.errors import StoreError, SwitchoverFailed
from app.role import Member
from app.store.base import KeyValue, LeaseGrant, Put

if TYPE_CHECKING:
    from app.election.elector import Elector

log = logging.getLogger("vipmon.election")

_RETRY = 0.1  # s between tries of a failed read or withdrawal
_POLL = 0.05  # s before reading again after a watch that saw nothing
_WITHDRAW_TRIES = 3


@dataclass
class Handing:
    """A master's own switchover, carried through its release: ``record`` goes in with the
    key's delete, on the lease ``granting`` grants meanwhile; ``written`` once it did."""

    record: Switchover
    granting: asyncio.Task[LeaseGrant]
    written: bool = False


class Handover:
    """The planned hand-over of one elector. Runs on the elector's event loop.

    ``lock`` serialises planned hand-overs (admin commands and the master's
    duties); :meth:`resign` does not take it, so SIGTERM is never held up.
    """

    def __init__(self, elector: Elector) -> None:
        self.e = elector
        #: The term being released, or None. Written here only.
        self.releasing_term: int | None = None
        #: The release's drain is over: established connections are refused too.
        self.drained = False
        self.lock = asyncio.Lock()

    @property
    def releasing(self) -> bool:
        return self.releasing_term is not None

    # -- the release protocol ----------------------------------------------

    async def release(
        self, reason: str, ending: Ending | None = None, handing: Handing | None = None
    ) -> bool:
        """Give up the role as the module docstring says. True if the captured key is gone.

        The lease is kept (the node stays a member). Returns at once, True, when
        the node holds no key. The term's end record (``ending``: how) is written
        while the node drains and settles, and before the key goes, so the next
        master finds it. ``handing``: the master's own switchover, whose record goes
        in with the key's delete.
        """
        e = self.e
        if not e.holds_key:
            return True
        term = e.term
        owner = self.releasing_term is None
        writing: asyncio.Task[bool] | None = None
        if owner:
            self.releasing_term = term
        try:
            drain = e.settings.drain_time
            e.publish(f"draining: {reason}" if drain > 0 else f"releasing: {reason}")
            if owner:
                record = e.end_record(term, e.me, e.wall(), ending or Ending(), reason)
                writing = asyncio.create_task(e.write_history(*record))
            if drain > 0:
                await e.clock.sleep(drain)
            if owner:
                self.drained = True
                e.publish(f"drain of term {term} ended")
            if not e.fence_closed():
                log.warning(
                    "releasing term %d: the fence did not close (%s); letting the lease expire",
                    term,
                    e.fence.error,
                )
                self._abandon(term, reason)
                return False
            await e.clock.sleep(e.settings.settle_time)
            if writing is not None and not await writing:
                e.queue_history(*record)  # the store failed: the history loop tries again
            if not await e.barrier.passed(e.deadline.valid_until - e.clock.now()):
                log.warning(
                    "releasing term %d: the probe loop did not confirm that the last positive "
                    "answer has left; letting the lease expire instead",
                    term,
                )
                self._abandon(term, reason)
                return False
            return await self._delete(term, reason, handing)
        except BaseException:
            # Cancelled, or a bug: the key may be deleted or not; never come back positive.
            self._abandon(term, f"{reason}: release interrupted")
            raise
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
            if owner:
                self.releasing_term, self.drained = None, False
                e.publish(f"release of term {term} ended")

    def _abandon(self, term: int, reason: str) -> None:
        """Give up the lease that holds ``term``: the store expires the key, with the margin."""
        e = self.e
        if e.holds_key and e.term == term:
            e.lose_lease(f"{reason}; lease abandoned")

    async def _delete(self, term: int, reason: str, handing: Handing | None = None) -> bool:
        e = self.e
        try:
            if handing is None:
                deleted = await e.store.resign(e.key, term)
            else:
                deleted = await self._delete_with_record(term, handing)
        except StoreError as exc:
            log.warning("releasing term %d failed (%s); letting the lease expire", term, exc)
            self._abandon(term, reason)
            return False
        log.info("released term %d (key deleted: %s): %s", term, deleted, reason)
        if e.holds_key and e.term == term:
            e.lose_key(reason)
        return True

    async def _delete_with_record(self, term: int, handing: Handing) -> bool:
        """Delete the term and write the switchover record in one transaction, guarded by
        the term's ``create_revision`` and the record key's absence. If the record's lease
        was not granted, or another record got in first, the key is deleted alone (the
        switchover then says why, :meth:`_switch_over_from_here`). Raises ``StoreError``."""
        e = self.e
        key = switchover_key(e.settings.cluster)
        try:
            grant = await handing.granting
        except StoreError as exc:
            log.warning("switchover to %s: no lease for its record (%s)", handing.record.to_id, exc)
            return await e.store.resign(e.key, term)
        record = Put(key, handing.record.encode(), grant.lease_id)
        if await e.store.resign(e.key, term, [record], absent=[key]):
            handing.written = True
            return True
        return await e.store.resign(e.key, term)

    async def resign(self) -> None:
        """SIGTERM: negative at once, release (drain, settle, delete), revoke the lease."""
        e = self.e
        e.request_stop()
        if e.holds_key:
            await self.release("shutting down", Ending(RESIGNED))
        else:  # a master is never a switchover's target
            await self._drop_record_naming_me()
        lease_id = e.lease_id
        if lease_id is not None:
            try:
                await e.store.revoke(lease_id)
            except StoreError as exc:
                log.warning("lease revoke failed, it will expire instead: %s", exc)
            e.lose_lease("resigned")
        e.publish("resigned")

    async def _drop_record_naming_me(self) -> None:
        """A stopping node deletes a switchover record that names it as the target, guarded
        by that record's revision: it will never take the role, and the record blocks
        every other node. Best effort: the requester also gives up once our member
        record is gone."""
        e = self.e
        key = switchover_key(e.settings.cluster)
        try:
            kv, _ = await e.store.get(key)
            record = decode_control(e.settings.cluster, [kv]).switchover if kv else None
            if record is not None and record.to_id == e.me.node_id:
                await e.store.resign(key, record.create_revision)
                log.info("withdrew the switchover to this node (%s): stopping", e.me.node_id)
        except StoreError as exc:
            log.debug("could not withdraw a switchover naming this node: %s", exc)

    # -- switchover ----------------------------------------------------------

    async def switchover(
        self, record: Switchover, ending: Ending | None = None
    ) -> tuple[int, float]:
        """Write ``record``, release if we are its master, wait for the target's new term.

        Returns (new term, seconds taken). The record is withdrawn whatever
        happens. Raises :class:`SwitchoverFailed` (another switchover runs, or
        the target did not take the role within ``switchover_timeout``) or
        ``StoreError`` when the record could not be written.
        """
        e = self.e
        started = e.clock.now()
        if e.holds_key and e.term == record.term:
            return await self._switch_over_from_here(record, ending, started)
        grant = await e.store.grant(self._record_ttl())
        try:
            await self._write_record(record, grant.lease_id)
            return await self._wait_for_target(record, started, started)
        finally:
            await self._withdraw(grant.lease_id)

    async def _write_record(self, record: Switchover, lease_id: int) -> None:
        """Create the record on its lease, alone; SwitchoverFailed if one is there already."""
        key = switchover_key(self.e.settings.cluster)
        result = await self.e.store.acquire(key, record.encode(), lease_id)
        if not result.won:
            raise SwitchoverFailed("another switchover is in progress")

    async def _switch_over_from_here(
        self, record: Switchover, ending: Ending | None, started: float
    ) -> tuple[int, float]:
        """The master's own switchover: two commits on the target's path.

        The record's lease is granted while the node drains; the record goes in with
        the term's delete, in one transaction at the end of the release; the target
        acquires on that watch event. If the release did not write the record (it
        let the lease expire instead, or the key was gone already), the record is
        written alone afterwards, as a requester that is not the master writes it.
        """
        e = self.e
        if e.control.switchover is not None:
            raise SwitchoverFailed("another switchover is in progress")
        handing = Handing(record, asyncio.create_task(e.store.grant(self._record_ttl())))
        try:
            why = ending or Ending(SWITCHOVER, record.to_id)
            await self.release(f"switchover to {record.to_id}", why, handing)
            waiting_from = e.clock.now()  # our own drain does not count against the target
            if not handing.written:
                await self._write_record(record, (await handing.granting).lease_id)
            return await self._wait_for_target(record, started, waiting_from)
        finally:
            await self._drop_grant(handing.granting)

    async def _drop_grant(self, granting: asyncio.Task[LeaseGrant]) -> None:
        """Withdraw the record (revoke its lease), or stop its grant if still in flight: a
        lease granted all the same holds no key and runs out by itself."""
        if not granting.done():
            granting.cancel()
            await asyncio.gather(granting, return_exceptions=True)
            return
        if not granting.cancelled() and granting.exception() is None:
            await self._withdraw(granting.result().lease_id)

    def _record_ttl(self) -> int:
        """The record's lease: the requester's own release, then the target's time, then a TTL."""
        s = self.e.settings
        return math.ceil(s.drain_time + s.settle_time + s.switchover_timeout + s.lease_ttl)

    async def _wait_for_target(
        self, record: Switchover, started: float, waiting_from: float
    ) -> tuple[int, float]:
        """Read, then watch, the cluster's keys until the target holds a newer term.

        The record blocks every other node, so a target that cannot take the
        role must not keep it for ``switchover_timeout``: the wait ends (and
        the caller withdraws the record) as soon as the target's member record
        is gone (it stopped, or crashed and its lease ran out) or says it
        cannot lead.
        """
        e = self.e
        deadline = waiting_from + e.settings.switchover_timeout
        target_key = member_key(e.settings.cluster, record.to_id)
        while (left := deadline - e.clock.now()) > 0:
            try:
                kv, revision = await e.store.get(e.key)
                holder = decode_leader(kv.value) if kv is not None else None
                if (
                    kv is not None
                    and holder is not None
                    and holder.node_id == record.to_id
                    and kv.create_revision > record.term
                ):
                    return kv.create_revision, e.clock.now() - started
                target, _ = await e.store.get(target_key)
                why = _cannot_take_over(target)
                if why is not None:
                    raise SwitchoverFailed(f"{record.to_id} {why}; the switchover was withdrawn")
                if not await e.store.watch(e.watch_prefix, revision + 1, min(left, 1.0), True):
                    await e.clock.sleep(min(_POLL, left))
            except StoreError as exc:
                log.debug("switchover to %s: reading the leader key failed: %s", record.to_id, exc)
                await e.clock.sleep(min(_RETRY, max(left, 0.0)))
        raise SwitchoverFailed(
            f"{record.to_id} did not take the role within {e.settings.switchover_timeout:g} s; "
            "the switchover was withdrawn"
        )

    async def _withdraw(self, lease_id: int) -> None:
        """Revoke the record's lease, which deletes the record; retried, then left to expire."""
        e = self.e
        for attempt in range(_WITHDRAW_TRIES):
            try:
                await e.store.revoke(lease_id)
                return
            except StoreError as exc:
                if attempt + 1 == _WITHDRAW_TRIES:
                    log.warning(
                        "could not withdraw the switchover record (%s); it expires with its "
                        "lease within %d s",
                        exc,
                        self._record_ttl(),
                    )
                    return
                await e.clock.sleep(_RETRY)

    async def hand_over(
        self, reason: str, ending: Ending, members: tuple[Member, ...] | None = None
    ) -> None:
        """Switch over to the best other candidate, or just release if there is none.

        While the cluster is paused nothing happens: a release would leave the
        cluster without a master, since the pause blocks every acquire.
        Raises :class:`SwitchoverFailed` or ``StoreError`` when the switchover failed.
        """
        e = self.e
        if e.control.paused:
            log.debug("%s: the cluster is paused, so the master keeps its role", reason)
            return
        target = pick_target(e.members if members is None else members, exclude=e.me.node_id)
        if target is None:
            await self.release(reason, ending)
            return
        record = Switchover(e.me.node_id, target.node_id, e.term)
        await self.switchover(record, replace(ending, to=target.node_id))

    # -- the master's duties ------------------------------------------------

    async def duties(self) -> None:
        """Hand over if the control keys, the local check or failback say so.

        Runs under the lock, so it never races an admin command that is handing
        over at the same moment.
        """
        async with self.lock:
            if self.e.holds_key and not self.releasing:
                try:
                    await self._duties()
                except (SwitchoverFailed, StoreError) as exc:
                    log.warning("hand-over failed: %s", exc)

    async def _duties(self) -> None:
        e = self.e
        me = e.me.node_id
        record = e.control.switchover
        if record is not None and record.from_id == me and record.term == e.term:
            await self.release(f"switchover to {record.to_id}", Ending(SWITCHOVER, record.to_id))
            return
        if record is not None and record.to_id == me:
            await self._clear_switchover(record)
            return
        if e.in_maintenance:
            await self.hand_over("maintenance", Ending(MAINTENANCE))
            return
        check = e.check()
        if not check.ok:
            if pick_target(e.members, exclude=me) is not None:
                await self.hand_over(f"local check failing: {check.detail}", Ending(CHECK_FAILING))
            return
        if e.settings.failback and not e.control.paused:
            held = e.clock.now() - e.term_started
            target = pick_target(e.members, exclude=me)
            if (
                target is not None
                and target.priority > e.settings.priority
                and held >= e.settings.failback_hold
            ):
                await self.hand_over(
                    f"failback to higher priority {target.node_id}", Ending(FAILBACK)
                )

    async def _clear_switchover(self, record: Switchover) -> None:
        """The new master deletes the record that named it, if it is still that one."""
        e = self.e
        try:
            await e.store.resign(switchover_key(e.settings.cluster), record.create_revision)
        except StoreError as exc:
            e.store_failed("clear switchover", exc)


def _cannot_take_over(target: KeyValue | None) -> str | None:
    """Why the switchover's target, by its member record, cannot take the role; None if it can."""
    if target is None:
        return "is gone (no member record: it stopped, or crashed and its lease ran out)"
    member = decode_member(target.value)
    if member is None:
        return "has a member record that is not a vipmon record"
    if not can_lead(member):
        return "is no longer eligible (by its member record)"
    return None
