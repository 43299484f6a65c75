"""The elector: one node's side of the leader election.

Each ``step`` method makes at most one store call and folds the answer into
the node's state; :mod:`app.election.runner` composes them into loops.
Tests drive the steps directly, in any order, on a fake clock.

Safety rests on three rules:

* the node is positive only while it holds the leader key (its acquire
  transaction succeeded and it has not seen the key go) *and* its lease
  deadline ``t_send + TTL - margin`` is ahead of the monotonic clock;
* store errors never extend the deadline;
* every change of key ownership is decided by a transaction, so watch events
  are only hints: late or repeated events cannot make a node positive.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from app.clock import Clock
from app.election.barrier import Barrier, NoBarrier
from app.election.cluster import CheckView, ClusterSteps
from app.election.control import (
    ControlState,
    acquire_guards,
    campaign_delay,
    control_prefix,
    switchover_key,
)
from app.election.handover import Handover
from app.election.history import LEASE_EXPIRED, LEASE_LOST, Ending, History, earliest_end
from app.election.lease import LeaseDeadline
from app.election.records import (
    LeaderRecord,
    cluster_prefix,
    decode_leader,
    encode_leader,
    leader_key,
    members_prefix,
)
from app.election.roster import Roster
from app.errors import StoreError
from app.fence.fence import Fence, NoFence
from app.role import Member, Role, Snapshot, Transition
from app.settings import Settings
from app.store.base import EventKind, KeyValue, Renewal, Store, WatchEvent

log = logging.getLogger("vipmon.election")


_URL = re.compile(r"https?://\S+")
_TICK_MAX = 1.0  # s: the longest the tick sleeps (the snapshot's heartbeat, the check)
_TICK_SLACK = 0.001  # s past a deadline before the tick looks again
_HISTORY_QUEUE = 64  # history records waiting for the store, at most
_FENCE_ASIDE_TTLS = 3  # lease TTLs a node whose fence failed under the key stays aside, at most


class _NoCheck:
    configured, ok, detail = False, True, "no local check"


class Observer(Protocol):
    """Told about transitions, renewals and store errors (metrics, hooks)."""

    def transition(self, t: Transition, term: int) -> None: ...
    def renew_latency(self, seconds: float) -> None: ...
    def store_error(self, kind: str) -> None: ...


class Elector(ClusterSteps):
    """One node in the election. Not thread-safe: one event loop drives it.

    Other threads read :attr:`snapshot` (a frozen object, replaced whole) and
    may call :meth:`request_stop`.
    """

    # State with an immutable start value; each instance assigns its own.
    lease_id: int | None = None
    last_renew_send: float = -math.inf
    holds_key: bool = False
    term: int = 0
    watch_revision: int = 0
    leader: LeaderRecord | None = None
    leader_term: int = 0
    leader_unknown: bool = False
    members: tuple[Member, ...] = ()
    control: ControlState = ControlState()
    term_started: float = -math.inf
    store_reachable: bool = False
    store_failure: str | None = None  # the reason last logged at WARNING
    store_ok_until: float = -math.inf
    last_transition: Transition | None = None
    #: The last term this node saw end (its holder, or None if unreadable) and when.
    gone: tuple[LeaderRecord | None, int] | None = None
    gone_at: float = 0.0
    _end_read: int = 0  # the last term whose end record learn_how_it_ended read
    _role: Role = Role.UNKNOWN

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        *,
        wall: Callable[[], float] = time.time,
        check: Callable[[], CheckView] | None = None,
        observers: tuple[Observer, ...] = (),
        barrier: Barrier | None = None,
        fence: Fence | NoFence | None = None,
    ) -> None:
        self.settings = settings
        #: The kernel fence (app.fence): its permissions follow the lease, set in publish.
        self.fence: Fence | NoFence = fence or NoFence()
        self.check = check or _NoCheck
        self.observers = observers
        #: A planned release passes it before it deletes the key (app.election.barrier).
        self.barrier: Barrier = barrier or NoBarrier()
        self.store = store
        self.clock = clock
        self.wall = wall
        self.key = leader_key(settings.cluster)
        #: The watch covers every key of the cluster: the leader key, members, control.
        self.watch_prefix = cluster_prefix(settings.cluster)
        self._control_prefix = control_prefix(settings.cluster)
        self._switchover_key = switchover_key(settings.cluster)
        #: The campaign loop's watch in flight, to cut short (see :meth:`_fold_renewal`).
        self._watch_cut: asyncio.Timeout | None = None
        self._members_prefix = members_prefix(settings.cluster)
        self.me = LeaderRecord(settings.node_id, settings.effective_advertise_url)
        self.started_at = wall()
        self.deadline = LeaseDeadline(settings.lease_margin)
        self.peer_urls: frozenset[str] = frozenset({self.me.advertise_url})
        self.heartbeat = clock.now()
        self.history = History(settings.cluster)
        self.history_writes: deque[tuple[str, bytes]] = deque(maxlen=_HISTORY_QUEUE)
        #: Set when there is a history record to write.
        self.history_hint = asyncio.Event()
        self._stop = threading.Event()
        self._garbage_logged: set[tuple[str, int]] = set()
        self.snapshot = Snapshot(
            node_id=settings.node_id,
            backend=store.name,
            advertise_url=self.me.advertise_url,
            started_at=self.started_at,
            stop_flag=self._stop,
            drain_on_stop=settings.drain_time > 0,
        )
        self.lease_ready = asyncio.Event()
        #: Set when the watch saw a control key change: the master's duties read them.
        self.control_hint = asyncio.Event()
        #: Set when a member or control key changed, or our own record is out of date:
        #: the members loop reads them again.
        self.members_hint = asyncio.Event()
        #: Every planned release of the role: switchover, maintenance, SIGTERM, ...
        self.handover = Handover(self)
        #: Every member seen, missing ones included, until forgotten.
        self.roster = Roster(self)

    # -- publication ------------------------------------------------------

    def role(self) -> Role:
        return self.snapshot.role_at(self.clock.now())

    def publish(self, reason: str) -> None:
        """Replace the snapshot; log and report a role change with ``reason``."""
        self._sync_fence()
        now = self.clock.now()
        check = self.check()
        snap = Snapshot(
            node_id=self.settings.node_id,
            backend=self.store.name,
            advertise_url=self.me.advertise_url,
            started_at=self.started_at,
            store_version=self.store.server_version,
            holds_key=self.holds_key,
            term=self.term if self.holds_key else self.leader_term,
            lease_valid_until=self.deadline.valid_until,
            fence_until=self.fence.open_until,
            fence_error=self.fence.error,
            store_ok_until=self.store_ok_until,
            store_reachable=self.store_reachable,
            leader_id=self.leader.node_id if self.leader else None,
            leader_url=self.leader.advertise_url if self.leader else None,
            leader_term=self.leader_term,
            leader_unknown=self.leader_unknown,
            stop_flag=self._stop,
            drain_on_stop=self.settings.drain_time > 0,
            draining=self.handover.releasing,
            maintenance=self.in_maintenance,
            paused=self.control.paused,
            maintenance_since=self.control.maintenance_since(self.settings.node_id),
            paused_since=self.control.paused_at if self.control.paused else None,
            priority=self.settings.priority,
            eligible=self.eligible(),
            check_configured=check.configured,
            check_ok=check.ok,
            check_detail=check.detail,
            members=self.members,
            missing=self.roster.missing,
            peer_urls=self.peer_urls,
            history=self.history.view,
            last_transition=self.last_transition,
            loop_heartbeat=self.heartbeat,
        )
        role = snap.role_at(now)
        if role is not self._role:
            self.last_transition = Transition(self.wall(), self._role, role, reason)
            log.info(
                "role %s -> %s: %s (node=%s term=%d)",
                self._role.value,
                role.value,
                reason,
                self.settings.node_id,
                snap.term,
                extra={
                    "event": "transition",
                    "node": self.settings.node_id,
                    "term": snap.term,
                    "from_role": self._role.value,
                    "to_role": role.value,
                    "reason": reason,
                },
            )
            self._role = role
            snap = Snapshot(**{**snap.__dict__, "last_transition": self.last_transition})
            for observer in self.observers:
                observer.transition(self.last_transition, snap.term)
        self.snapshot = snap

    def _sync_fence(self) -> None:
        """Let the kernel hold what the node may do now, before the snapshot says so.

        New connections: while we hold the key on a valid lease, neither releasing
        nor stopping. Established ones: the same, and through a release's drain.
        A grant happens before the snapshot that turns the node positive is
        published, and every permission ends before the lease deadline.
        """
        if not self.fence.configured:
            return
        held = self.holds_key and self.deadline.valid(self.clock.now())
        new = held and not self.handover.releasing and not self._stop.is_set()
        self.fence.sync(new, held and not self.handover.drained, self.deadline.valid_until)

    def fence_closed(self) -> bool:
        """The kernel confirmed every permission closed (always so without a fence)."""
        return self.fence.closed

    def tick(self) -> float:
        """Re-evaluate the role at now: logs a transition caused by time alone.

        Returns the seconds until the next instant at which time alone could
        change the role (a deadline of the new snapshot), at most ``_TICK_MAX``.
        """
        reason = "lease deadline passed without a renewal" if self.holds_key else "store silent"
        self.publish(reason)
        if self.lease_id is not None and self.member_record() not in self.members:
            self.members_hint.set()  # our check, maintenance or eligibility changed
        now, snap = self.clock.now(), self.snapshot
        deadlines = (snap.lease_valid_until, snap.store_ok_until, snap.fence_until)
        ahead = [t - now for t in deadlines if now < t < math.inf]
        return min([_TICK_MAX, *(t + _TICK_SLACK for t in ahead)])

    # -- bookkeeping ------------------------------------------------------

    def store_ok(self, t_send: float) -> None:
        if not self.store_reachable:
            log.info("store %s reachable", self.store.name)
        self.store_reachable, self.store_failure = True, None
        self.store_ok_until = max(self.store_ok_until, t_send + self.settings.lease_ttl)

    def store_failed(self, op: str, exc: StoreError) -> None:
        """WARNING when a failure begins (at start too) or its reason changes; DEBUG repeats."""
        reason = str(exc)
        # The same failure on another endpoint of a rotation is not a new reason.
        kind = f"{type(exc).__name__}: {_URL.sub('<endpoint>', reason)}"
        level = logging.DEBUG if kind == self.store_failure else logging.WARNING
        log.log(level, "store %s: %s failed: %s", self.store.name, op, reason)
        self.store_reachable, self.store_failure = False, kind
        for observer in self.observers:
            observer.store_error(type(exc).__name__)
        self.publish(f"store unreachable ({op}: {exc})")

    def lose_key(self, reason: str) -> None:
        """We no longer hold the key. Unless our own release ends the term (it wrote why),
        the history says the lease was lost."""
        if self.holds_key:
            if self.handover.releasing_term != self.term:
                key, value = self.end_record(
                    self.term, self.me, self.wall(), Ending(LEASE_LOST), reason
                )
                self.queue_history(key, value)
            self._saw_end(self.me, self.term)
            self._set_hold(0)
            self._set_leader(None, 0, unknown=self.leader_unknown)
        self.publish(reason)

    def _set_hold(self, term: int) -> None:
        """The one writer of :attr:`holds_key` and :attr:`term`: ``term`` 0 holds nothing."""
        self.holds_key, self.term = term > 0, term

    def _set_leader(self, record: LeaderRecord | None, term: int, unknown: bool = False) -> None:
        """The one writer of who we last saw hold the key, and of its term."""
        self.leader, self.leader_term, self.leader_unknown = record, term, unknown
        if record is not None and record != self.me:
            self.aside_until = -math.inf  # another node took the key: step back in

    def lease_lost(self, reason: str) -> None:
        """The store did not keep our lease: WARNING (an operator should look), then give it up."""
        log.warning(
            "lease %s lost%s: %s; a new one will be granted",
            self.lease_id,
            f" while holding the leader key (term {self.term})" if self.holds_key else "",
            reason,
            extra={"event": "lease_lost", "node": self.settings.node_id, "reason": reason},
        )
        self.lose_lease(reason)

    def lose_lease(self, reason: str) -> None:
        self.lease_id = None
        self.deadline.on_lost()
        self.lease_ready.clear()
        self.lose_key(reason)

    def _saw_end(self, holder: LeaderRecord | None, term: int) -> None:
        if term > 0 and (self.gone is None or term > self.gone[1]):
            self.gone, self.gone_at = (holder, term), self.wall()

    def _observe_holder(self, kv: KeyValue | None) -> None:
        if kv is None:
            self._saw_end(self.leader, self.leader_term)
            self._set_leader(None, 0)
            return
        record = decode_leader(kv.value)
        if record is None:
            self.log_garbage(kv, "treating it as held by someone unknown")
            self._set_leader(None, kv.create_revision, unknown=True)
            return
        if record != self.me and (record, kv.create_revision) != (self.leader, self.leader_term):
            log.info(
                "leader is %s (%s), term %d",
                record.node_id,
                record.advertise_url,
                kv.create_revision,
                extra={"event": "leader", "node": record.node_id, "term": kv.create_revision},
            )
        self._set_leader(record, kv.create_revision)

    def log_garbage(self, kv: KeyValue, consequence: str) -> None:
        mark = (kv.key, kv.mod_revision)
        if mark not in self._garbage_logged:
            self._garbage_logged.add(mark)
            log.warning(
                "key %s holds a value that is not a vipmon record (%d bytes, revision %d); %s",
                kv.key,
                len(kv.value),
                kv.mod_revision,
                consequence,
            )

    # -- steps: each makes at most one store call -------------------------

    async def ensure_lease(self) -> bool:
        """Grant a lease if we have none. True if we hold one afterwards."""
        if self.lease_id is not None:
            return True
        t_send = self.clock.now()
        try:
            grant = await self.store.grant(self.settings.lease_ttl)
        except StoreError as exc:
            self.store_failed("lease grant", exc)
            return False
        self.store_ok(t_send)
        if self.lease_id is not None:  # another grant landed first: keep that one
            await self._revoke_quietly(grant.lease_id)
            return True
        self.lease_id = grant.lease_id
        self.deadline = LeaseDeadline(self.settings.lease_margin)
        self.deadline.on_reply(t_send, grant.ttl)
        self.last_renew_send = t_send
        self.lease_ready.set()
        self.publish("lease granted")
        return True

    async def renew(self) -> bool:
        """Send one keepalive. True if the store answered.

        A lease whose deadline passed without a confirmed renewal is given up
        instead (revoked best-effort, a new one granted later): the store may
        still be renewing it from keepalives whose replies come too late, and
        a leader key bound to it would block every other node for ever.
        """
        lease_id, deadline = self.lease_id, self.deadline
        if lease_id is None:
            return True
        t_send = self.clock.now()
        if self.holds_key and self.fence.error is not None:
            # Not revoked: the key must outlive the kernel's permission, which ends
            # before the deadline; the store expires it after that, with the margin.
            self.aside_until = t_send + _FENCE_ASIDE_TTLS * self.settings.lease_ttl
            self.lease_lost(f"the fence failed ({self.fence.error}); the lease is abandoned")
            return True
        if not deadline.valid(t_send):
            self.lease_lost("lease deadline passed without a confirmed renewal; giving it up")
            await self._revoke_quietly(lease_id)
            return True
        try:
            renewal = await self.store.renew(lease_id, self.key)
        except StoreError as exc:
            self.store_failed("keepalive", exc)
            return False
        ttl = renewal.ttl
        self.store_ok(t_send)
        for observer in self.observers:
            observer.renew_latency(self.clock.now() - t_send)
        if lease_id != self.lease_id:
            return True  # the reply is about a lease we have already replaced
        self.last_renew_send = max(self.last_renew_send, t_send)
        if ttl <= 0:
            self.lease_lost("lease expired in the store")
        else:
            deadline.on_reply(t_send, ttl)
            self.publish("lease renewed")
            self._fold_renewal(renewal)
        return True

    def _fold_renewal(self, renewal: Renewal) -> None:
        """Fold in the leader key as the renewal read it (on etcd, the keepalive's quorum
        read): what the campaign loop's watch shows, unless that watch hangs on a frozen
        member. So a master whose key is gone steps down, and a standby that reads the key
        free ends its watch and campaigns, within one renewal. A read older than what the
        campaign loop has seen, or taken while a planned release owns the key, is dropped.
        """
        if renewal.revision == 0 or renewal.revision + 1 < self.watch_revision:
            return
        if self.handover.releasing:
            return
        kv = renewal.key
        if not self.holds_key:
            known_term = self.leader_term if self.leader is not None or self.leader_unknown else 0
            if (kv.create_revision if kv is not None else 0) == known_term:
                return
        self._fold_key_read(kv, " (with the renewal)")
        if self.sees_key_free and self._watch_cut is not None:
            self._watch_cut.reschedule(asyncio.get_running_loop().time())

    def _fold_key_read(self, kv: KeyValue | None, how: str) -> None:
        """A read of the leader key: a master whose key it no longer is steps down; a
        standby takes the holder it shows."""
        if self.holds_key:
            if kv is None or not self._is_ours(kv):
                self._observe_holder(kv)
                self.lose_key(f"leader key no longer ours{how}")
            return
        self._observe_holder(kv)
        self.publish(f"leader key read{how}")

    async def _revoke_quietly(self, lease_id: int) -> None:
        try:
            await self.store.revoke(lease_id)
        except StoreError as exc:
            log.debug("revoke of spare lease %d failed: %s", lease_id, exc)

    @property
    def sees_key_free(self) -> bool:
        """We do not hold the key and last saw nobody hold it (not even garbage)."""
        return not self.holds_key and self.leader is None and not self.leader_unknown

    def free_key_delay(self) -> float:
        """How long to wait before campaigning for a free key.

        The priority delay, except for a switchover's target: the record keeps
        every other node out, so it goes at once.
        """
        record = self.control.switchover
        if record is not None and record.to_id == self.me.node_id:
            return 0.0
        return campaign_delay(
            self.settings.priority,
            self.settings.node_id,
            self.members,
            self.settings.priority_delay,
        )

    async def campaign(self) -> bool:
        """One acquire attempt, only with a valid lease. False on a store error.

        Never while a planned release runs or after a stop was requested: a
        node giving up a term must not win a new one in the middle.
        """
        lease_id = self.lease_id
        if self.holds_key or lease_id is None or self.handover.releasing or self._stop.is_set():
            return True
        t_send = self.clock.now()
        if not self.deadline.valid(t_send):
            return True
        if not self.eligible():
            return await self.verify_hold()
        absent, same = acquire_guards(self.settings.cluster, self.settings.node_id, self.control)
        try:
            result = await self.store.acquire(
                self.key, encode_leader(self.me), lease_id, absent, same
            )
        except StoreError as exc:
            self.store_failed("acquire", exc)
            return False
        self.store_ok(t_send)
        if lease_id != self.lease_id or self.holds_key:
            # The key went in under a lease we no longer hold (it expired while the
            # reply was in flight): the key died with that lease. Never claim it.
            self.publish("acquire reply for a replaced lease ignored")
            return True
        self.watch_revision = max(self.watch_revision, result.revision + 1)
        holder = result.holder
        if result.won or (holder is not None and holder.lease == lease_id):
            self._set_hold(result.create_revision)
            self.term_started = self.clock.now()
            self._set_leader(self.me, self.term)
            self.publish(f"acquired the leader key (term {self.term}){self._after_previous()}")
            last = self.last_transition
            won_at = last.at_wall if last and last.to_role is Role.MASTER else self.wall()
            self.queue_begin(self.term, won_at)
        else:
            self._observe_holder(holder)
            self.publish("leader key held by another node" if holder else "leader key free")
        return True

    def previous_term(self) -> tuple[LeaderRecord | None, int] | None:
        """The newest term before ours that we know of: seen end, or in the history."""
        known = [t for t in self.history.terms() if t < self.term]
        gone = self.gone
        if known and (gone is None or known[-1] > gone[1]):
            term = known[-1]
            view = next((r for r in self.history.view if r.term == term), None)
            holder = LeaderRecord(view.node_id, view.url) if view and view.node_id else None
            return holder, term
        return gone

    async def learn_how_it_ended(self) -> bool:
        """Before campaigning for a free key: read how the term we saw end ended, once,
        unless the watch brought its record already. False on a store error."""
        gone = self.gone
        if gone is None or gone[1] in self.history.ends or gone[1] == self._end_read:
            return True
        self._end_read = gone[1]
        return await self.read_end(gone[1])

    def _after_previous(self) -> str:
        """For the new master's transition line: whose term came before and how it ended.

        A term that ended without a record of how (its master never wrote one: a
        crash, a partition) ended by the lease running out; we record that.
        """
        previous = self.previous_term()
        if previous is None:
            return ""
        holder, term = previous
        end = self.history.ends.get(term)
        who = holder.node_id if holder else end.node_id if end and end.node_id else "unknown"
        if end is not None:
            return f" after term {term} of {who}, which ended: {end.text()}"
        saw = self.gone is not None and self.gone[1] == term
        ended = self.gone_at if saw else self.wall()
        detail = (
            f"no end record when {self.me.node_id} won term {self.term}: the lease ran out; "
            f"{who} may have stopped up to the TTL ({self.settings.lease_ttl} s) before that"
        )
        begin = self.history.begins.get(term)
        earliest = earliest_end(
            ended if saw else None, self.settings.lease_ttl, begin.began if begin else None
        )
        ending = Ending(LEASE_EXPIRED)
        self.queue_history(*self.end_record(term, holder, ended, ending, detail, earliest))
        return f" after term {term} of {who}, which ended: {LEASE_EXPIRED}"

    async def observe(self, timeout: float) -> bool:
        """Wait once for a change under the cluster's prefix; verify our hold unless it was
        the leader key that changed."""
        t_send = self.clock.now()
        try:
            async with asyncio.timeout(None) as cut:
                self._watch_cut = cut
                events = await self.store.watch(
                    self.watch_prefix, self.watch_revision, timeout, prefix=True
                )
        except TimeoutError:
            events = []  # cut short: a renewal read the key free
        except StoreError as exc:
            self.store_failed("watch", exc)
            return False
        finally:
            self._watch_cut = None
        self.store_ok(t_send)
        for event in events:
            self.watch_revision = max(self.watch_revision, event.revision + 1)
            self.apply_event(event)
        if self._read_after(events):
            return await self.verify_hold()
        return True

    def _read_after(self, events: list[WatchEvent]) -> bool:
        """Whether a batch leaves us needing a read of the leader key.

        The master reads when the batch has a leader-key event and the last one
        is not the key as ours (an event it could not place). A batch without
        one, or a quiet watch, proves nothing, and needs no read: every renewal
        reads the key (:meth:`_fold_renewal`), a watch hanging on a frozen member
        included. Anyone reads after a delete whose old value the store did not
        send (etcd omits ``prev_kv`` when that revision was compacted): its
        ``create_revision`` is 0, so it names no term.
        """
        mine = [e for e in events if e.kv.key == self.key]
        if any(e.kind is EventKind.DELETE and e.kv.create_revision == 0 for e in mine):
            return True
        if not self.holds_key or not mine:
            return False  # a quiet watch proves nothing, but every renewal reads the key
        return mine[-1].kind is not EventKind.PUT or not self._is_ours(mine[-1].kv)

    def apply_event(self, event: WatchEvent) -> None:
        """Fold one watch event in. Safe against late and repeated events.

        A member or control key's change only sets the hints for the loops that
        read them (:attr:`members_hint`, :attr:`control_hint`).
        """
        kv = event.kv
        if kv.key != self.key:
            if self.history.owns(kv.key):
                self.fold_history(kv, deleted=event.kind is EventKind.DELETE)
            elif kv.key.startswith(self._control_prefix):
                if kv.key == self._switchover_key:
                    self.fold_switchover(kv, event.kind is EventKind.DELETE, event.revision)
                self.control_hint.set()
                self.members_hint.set()
            elif kv.key.startswith(self._members_prefix) or self.roster.owns(kv.key):
                self.members_hint.set()
            return
        if self.holds_key:
            if event.kind is EventKind.DELETE and kv.create_revision == self.term:
                self.lose_key("leader key deleted")
            elif (
                event.kind is EventKind.PUT
                and kv.create_revision >= self.term
                and not self._is_ours(kv)
            ):
                self._observe_holder(kv)
                self.lose_key("leader key overwritten")
            return
        if event.kind is EventKind.DELETE:
            if kv.create_revision >= self.leader_term:
                self._observe_holder(None)
                self.publish("leader key deleted")
        elif kv.create_revision >= self.leader_term:
            self._observe_holder(kv)
            self.publish("leader key changed")

    def _is_ours(self, kv: KeyValue) -> bool:
        return (
            kv.create_revision == self.term
            and kv.lease == self.lease_id
            and decode_leader(kv.value) == self.me
        )

    async def verify_hold(self) -> bool:
        """Read the leader key and step down if it is no longer ours."""
        t_send = self.clock.now()
        try:
            kv, revision = await self.store.get(self.key)
        except StoreError as exc:
            self.store_failed("read leader key", exc)
            return False
        self.store_ok(t_send)
        self.watch_revision = max(self.watch_revision, revision + 1)
        self._fold_key_read(kv, "")
        return True

    async def resign(self) -> None:
        """SIGTERM: turn negative, release our term (drain, settle, delete), revoke the lease."""
        await self.handover.resign()

    def request_stop(self) -> None:
        """Thread-safe: from now on no snapshot of this node is positive, old or new."""
        self._stop.set()
