"""The election's steps about the cluster around the leader key.

Member records, the control keys and the term history. These are methods of
:class:`app.election.elector.Elector`, kept here by topic; each makes at most
one store call. The planned release of the role lives in
:mod:`app.election.handover`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from app import __version__
from app.clock import Clock
from app.election.control import ControlState, control_prefix, date_unknown, decode_control
from app.election.history import (
    Ending,
    History,
    TermBegin,
    TermEnd,
    begin_key,
    encode_begin,
    encode_end,
    end_key,
)
from app.election.lease import LeaseDeadline
from app.election.records import (
    LeaderRecord,
    decode_member,
    encode_member,
    member_key,
    members_prefix,
)
from app.errors import StoreError
from app.fence.fence import Fence, NoFence
from app.role import Member
from app.settings import Settings
from app.store.base import EventKind, KeyValue, Store, WatchEvent

log = logging.getLogger("vipmon.election")

_PEER_URLS_MAX = 256  # member URLs remembered since start


class CheckView(Protocol):
    """What the elector reads of the local health check (app.checks.CheckState)."""

    @property
    def configured(self) -> bool: ...
    @property
    def ok(self) -> bool: ...
    @property
    def detail(self) -> str: ...


class ClusterSteps:
    """Base of the Elector: what these steps need of it, then the steps."""

    settings: Settings
    store: Store
    me: LeaderRecord
    started_at: float
    lease_id: int | None
    deadline: LeaseDeadline
    holds_key: bool
    term: int
    key: str
    members: tuple[Member, ...]
    peer_urls: frozenset[str]
    control: ControlState
    check: Callable[[], CheckView]
    wall: Callable[[], float]
    history: History
    fence: Fence | NoFence
    clock: Clock
    #: A node whose fence failed under the leader key steps aside until this instant
    #: (monotonic), or until it sees another node take the key: it does not win back the
    #: term it abandoned, and a fence that keeps failing does not flap the role.
    aside_until: float = -math.inf
    #: History records to write, oldest first (key, value); the history loop writes them.
    history_writes: deque[tuple[str, bytes]]
    history_hint: asyncio.Event
    #: Where the history watch goes on from.
    history_revision: int = 0
    #: The lease our member record was last written under; None before the first write.
    member_lease: int | None = None
    #: Another live process's record under our node id, while there is one.
    id_taken_by: Member | None = None
    #: The member records as :meth:`refresh_members` last read them, or None when that
    #: read failed: the roster's upkeep works from them rather than reading them again.
    member_kvs: tuple[KeyValue, ...] | None = None

    @property
    def in_maintenance(self) -> bool:
        return self.settings.node_id in self.control.maintenance

    def eligible(self) -> bool:
        """May this node take the role: priority above 0, no maintenance, check passing,
        and no other live process holding our node id."""
        return (
            self.settings.priority > 0
            and not self.in_maintenance
            and self.check().ok
            and self.id_taken_by is None
            and self.fence.error is None
            and self.clock.now() >= self.aside_until
        )

    def publish(self, reason: str) -> None:
        raise NotImplementedError

    def note_peers(self, members: list[Member]) -> None:
        """Remember the members' URLs, a dead member's too, up to ``_PEER_URLS_MAX``."""
        urls = self.peer_urls | {m.advertise_url for m in members}
        if urls != self.peer_urls and len(urls) <= _PEER_URLS_MAX:
            self.peer_urls = frozenset(urls)

    def store_failed(self, op: str, exc: StoreError) -> None:
        raise NotImplementedError

    def log_garbage(self, kv: KeyValue, consequence: str) -> None:
        raise NotImplementedError

    def lose_key(self, reason: str) -> None:
        raise NotImplementedError

    def lose_lease(self, reason: str) -> None:
        raise NotImplementedError

    def member_record(self) -> Member:
        return Member(
            self.settings.node_id,
            self.me.advertise_url,
            __version__,
            self.started_at,
            self.eligible(),
            self.settings.priority,
            self.in_maintenance,
            self.check().ok,
        )

    async def publish_member(self) -> bool:
        """Write our member record, bound to our lease, unless another process holds our id.

        The record is created with a create-if-absent transaction. A record
        under our id that is not ours (another URL or start time, under
        another lease) belongs to a live process with the same ``--node-id``:
        we write nothing and stay ineligible until it is gone (a crashed
        predecessor's record goes with its lease, within one TTL).
        """
        lease_id = self.lease_id
        if lease_id is None:
            return False
        key = member_key(self.settings.cluster, self.settings.node_id)
        value = encode_member(self.member_record())
        try:
            if self.member_lease == lease_id:
                await self.store.put(key, value, lease_id)
                return True
            result = await self.store.acquire(key, value, lease_id)
            if not result.won:
                holder = result.holder
                if holder is None:
                    return False  # gone between compare and read: try again later
                other = self._other_holder(holder, lease_id)
                if other is not None:
                    self._id_taken(other)
                    return False
                await self.store.put(key, value, lease_id)  # ours from an earlier lease
        except StoreError as exc:
            self.store_failed("member record", exc)
            return False
        self.member_lease = lease_id
        self._id_free()
        return True

    def _other_holder(self, kv: KeyValue, lease_id: int) -> Member | None:
        """The member of another process that ``kv`` (our member key) holds, or None."""
        if kv.lease == lease_id:
            return None
        record = decode_member(kv.value)
        if record is None:
            self.log_garbage(kv, "overwriting it with this node's record")
            return None
        if _process(record) == (self.me.advertise_url, self.started_at):
            return None
        return record

    def _id_taken(self, other: Member) -> None:
        known = self.id_taken_by
        self.id_taken_by = other
        if known is not None and _process(known) == _process(other):
            return
        started = datetime.fromtimestamp(other.started_at, UTC).isoformat(timespec="seconds")
        log.warning(
            "node id %s is held by a live member record of another process (url %s, "
            "started %s); this node answers negative and waits until that record is gone "
            "(a crashed predecessor's record expires within the lease TTL, %d s)",
            self.settings.node_id,
            other.advertise_url,
            started.replace("+00:00", "Z"),
            self.settings.lease_ttl,
        )
        self.publish(f"node id {self.settings.node_id} in use at {other.advertise_url}")

    def _id_free(self) -> None:
        if self.id_taken_by is None:
            return
        self.id_taken_by = None
        log.info("node id %s is ours again: joining the election", self.settings.node_id)
        self.publish("node id free again")

    async def refresh_members(self) -> bool:
        """Read every member record; rewrite ours if it is missing or out of date."""
        self.member_kvs = None
        try:
            kvs, _ = await self.store.get_prefix(members_prefix(self.settings.cluster))
        except StoreError as exc:
            self.store_failed("list members", exc)
            return False
        self.member_kvs = tuple(kvs)
        members = []
        for kv in kvs:
            member = decode_member(kv.value)
            if member is None:
                self.log_garbage(kv, "leaving it out of the member list")
            else:
                members.append(member)
        ok = True
        mine = self.member_record()
        if self.lease_id is not None and mine not in members:
            ok = await self.publish_member()
            if ok:
                others = [m for m in members if m.node_id != mine.node_id]
                members = sorted([*others, mine], key=lambda m: m.node_id)
        self.members = tuple(members)
        self.note_peers(members)
        self.publish("members refreshed")
        return ok

    async def refresh_control(self) -> bool:
        """Read the control keys (pause, switchover, maintenance). False on a store error."""
        try:
            await self.read_control()
        except StoreError as exc:
            self.store_failed("read control keys", exc)
            return False
        return True

    async def read_control(self) -> ControlState:
        """Read the control keys and take them (see :meth:`take_control`); raises
        ``StoreError``. Returns the state held afterwards."""
        kvs, revision = await self.store.get_prefix(control_prefix(self.settings.cluster))
        control = decode_control(self.settings.cluster, kvs, revision)
        for kv in kvs:
            if kv.key in control.garbage:
                self.log_garbage(kv, "it still blocks other candidates until it is removed")
        self.take_control(control)
        return self.control

    def take_control(self, control: ControlState) -> None:
        """The one writer of :attr:`control`: a read of an older revision than the state
        held lost a race with a newer one, and is dropped."""
        if control.revision < self.control.revision:
            return
        control = date_unknown(control, self.control, self.wall())
        changed = replace(control, revision=0) != replace(self.control, revision=0)
        self.control = control
        if changed:
            self.publish("control keys changed")

    def fold_switchover(self, kv: KeyValue, deleted: bool, revision: int) -> None:
        """A watch event of the switchover record, taken into the control state at once, so
        that the record's target acquires on the very event that freed the key (the old
        master writes both in one transaction). Only a hint: the acquire's guard, the
        record's exact ``create_revision``, decides. An event older than the state held
        is dropped (:meth:`take_control`); the loops read the control keys after it too."""
        cluster = self.settings.cluster
        record = None if deleted else decode_control(cluster, [kv], revision).switchover
        self.take_control(replace(self.control, switchover=record, revision=revision))

    # -- the term history (app.election.history) ----------------------------

    def queue_history(self, key: str, value: bytes) -> None:
        """Have the history loop write a record (create-if-absent), soon, off the probe path."""
        self.history_writes.append((key, value))
        self.history_hint.set()

    def queue_begin(self, term: int, began: float) -> None:
        record = TermBegin(term, self.me.node_id, self.me.advertise_url, began)
        self.queue_history(begin_key(self.settings.cluster, term), encode_begin(record))

    def end_record(
        self,
        term: int,
        holder: LeaderRecord | None,
        ended: float,
        ending: Ending,
        detail: str,
        earliest: float | None = None,
    ) -> tuple[str, bytes]:
        """The key and value of term ``term``'s end record, as this node tells it.

        ``earliest``: for a lease that ran out, see :func:`app.election.history.earliest_end`.
        """
        record = TermEnd(
            term,
            holder.node_id if holder else "",
            holder.advertise_url if holder else "",
            ended,
            ending.how,
            ending.to,
            detail,
            self.me.node_id,
            earliest,
        )
        return end_key(self.settings.cluster, term), encode_end(record)

    async def write_history(self, key: str, value: bytes) -> bool:
        """Create one history key unless it exists (the first account stands). False on a
        store error."""
        try:
            result = await self.store.acquire(key, value, 0)
        except StoreError as exc:
            self.store_failed("write history", exc)
            return False
        if result.won:
            self.fold_history(KeyValue(key, value, result.create_revision, result.revision))
        elif result.holder is not None:
            self.fold_history(result.holder)
        return True

    async def load_history(self) -> bool:
        """Read every history key into memory, in one read.

        The history watch starts after that read's revision, so no change is
        missed; one seen twice is harmless, as folding is idempotent.
        """
        try:
            kvs, revision = await self.store.get_prefix(self.history.prefix)
        except StoreError as exc:
            self.store_failed("read history", exc)
            return False
        for kv in self.history.load(kvs):
            self.log_garbage(kv, "leaving it out of the history")
        self.history_revision = revision + 1
        self.publish("history read")
        return True

    async def watch_history(self, timeout: float) -> list[WatchEvent] | None:
        """Wait once for changes to the history keys and fold them in. None on a store error."""
        try:
            events = await self.store.watch(
                self.history.prefix, self.history_revision, timeout, prefix=True
            )
        except StoreError as exc:
            self.store_failed("watch history", exc)
            return None
        for event in events:
            self.history_revision = max(self.history_revision, event.revision + 1)
            self.fold_history(event.kv, deleted=event.kind is EventKind.DELETE)
        return events

    async def read_end(self, term: int) -> bool:
        """Read term ``term``'s end record into memory, if there is one."""
        try:
            kv, _ = await self.store.get(end_key(self.settings.cluster, term))
        except StoreError as exc:
            self.store_failed("read history", exc)
            return False
        if kv is not None:
            self.fold_history(kv)
        return True

    async def prune_history(self) -> bool:
        """Delete one key of a term beyond the last ``HISTORY_MAX``. False if none was left."""
        excess = self.history.excess()
        if not excess:
            return False
        key, revision = excess[0]
        try:
            await self.store.resign(key, revision)
        except StoreError as exc:
            self.store_failed("prune history", exc)
            return False
        self.fold_history(KeyValue(key, b"", revision, revision), deleted=True)
        return True

    def fold_history(self, kv: KeyValue, deleted: bool = False) -> None:
        if not self.history.fold(kv, deleted):
            self.log_garbage(kv, "leaving it out of the history")
        self.publish("history changed")


def _process(member: Member) -> tuple[str, float]:
    """What tells one process's member record from another's under the same node id."""
    return member.advertise_url, member.started_at
