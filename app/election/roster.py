"""The roster: every member the cluster has seen, listed until it is forgotten.

A member record (``members/<id>``) is bound to its node's lease, so a crashed
node's record goes with its lease, within a TTL, and every trace of the node
with it. The roster keeps one more record per member, with no lease:

    /vipmon/<cluster>/roster/<id>  {"id", "url", "first_seen", "missing_since"}

A member the roster lists and that has no member record is **missing**. It
stays listed (``/cluster``'s ``missing``, ``vipmon status``, ``/ui``) until an
operator forgets it (``vipmon member forget NODE``: :meth:`Roster.forget`,
refused while its member record exists) or it has been missing for
``--member-forget-after`` seconds (the master deletes it then; 0: never).

**One writer.** Only the master writes roster records, in
:meth:`Roster.refresh` (the members loop, when a member or roster key
changed, every few seconds otherwise, and soon after the node became master):
from the member records that loop has just read, it creates the record of a member it
sees for the first time (guarded by that member record's ``create_revision``,
so a member that is gone by then is not listed again), puts its URL when it
changed, sets ``missing_since`` when the member record is gone and clears it
when it is back, and prunes. Times are the master's wall clock. The admin
command deletes a record, and nothing else. Every node reads the roster into
memory; routes read it from the snapshot.

Parsing never raises: a value that is not a roster record is left out (and
logged by the elector); a missing member's absence is derived, never stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from app.election.records import (
    decode_member,
    json_object,
    member_key,
    wall_time,
)
from app.errors import Conflict, StoreError
from app.role import Member, MissingMember
from app.store.base import KeyValue

if TYPE_CHECKING:
    from app.election.elector import Elector

log = logging.getLogger("vipmon.election")

_WRITES_MAX = 16  # roster writes the master makes per round, at most

Write = Callable[[], Awaitable[None]]


def roster_prefix(cluster: str) -> str:
    return f"/vipmon/{cluster}/roster/"


def roster_key(cluster: str, node_id: str) -> str:
    return roster_prefix(cluster) + node_id


@dataclass(frozen=True)
class RosterEntry:
    """One member as the roster lists it. ``missing_since`` is None while it is alive."""

    node_id: str
    url: str
    first_seen: float
    missing_since: float | None = None


def encode_entry(entry: RosterEntry) -> bytes:
    return json.dumps(
        {
            "id": entry.node_id,
            "url": entry.url,
            "first_seen": entry.first_seen,
            "missing_since": entry.missing_since,
        }
    ).encode()


def decode_entry(raw: bytes) -> RosterEntry | None:
    """The entry ``raw`` holds, or None for anything else (times must be wall times)."""
    data = json_object(raw)
    if data is None:
        return None
    node_id, url = data.get("id"), data.get("url")
    first, since = wall_time(data.get("first_seen")), data.get("missing_since")
    if not isinstance(node_id, str) or not node_id or not isinstance(url, str) or first is None:
        return None
    missing = None if since is None else wall_time(since)
    if since is not None and missing is None:
        return None
    return RosterEntry(node_id, url, first, missing)


class Roster:
    """The roster of one elector: what it last read, and the master's upkeep of it.

    Runs on the elector's event loop. ``entries`` (id -> entry and the record's
    ``create_revision``) is written here only; :attr:`missing` is what the
    snapshot shows.
    """

    def __init__(self, elector: Elector) -> None:
        self.e = elector
        self.prefix = roster_prefix(elector.settings.cluster)
        self.entries: dict[str, tuple[RosterEntry, int]] = {}
        #: Listed members without a member record as this node last read them, by id.
        self.missing: tuple[MissingMember, ...] = ()
        #: The term in which this node last brought the roster up to date as master.
        self.kept_in_term = 0

    def owns(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def due(self) -> bool:
        """This node is master and has not brought the roster up to date in this term."""
        return self.e.holds_key and self.kept_in_term != self.e.term

    async def refresh(self) -> bool:
        """Read the roster; as master, bring it up to date. False on a store error."""
        e = self.e
        try:
            kvs, _ = await e.store.get_prefix(self.prefix)
        except StoreError as exc:
            e.store_failed("read roster", exc)
            return False
        self._load(kvs)
        ok = await self._keep() if e.holds_key else True
        self._derive()
        e.publish("roster read")
        return ok

    def _load(self, kvs: list[KeyValue]) -> None:
        entries = {}
        for kv in kvs:
            entry = decode_entry(kv.value)
            if entry is None or kv.key != roster_key(self.e.settings.cluster, entry.node_id):
                self.e.log_garbage(kv, "leaving it out of the roster")
                continue
            entries[entry.node_id] = (entry, kv.create_revision)
        self.entries = entries

    def _derive(self) -> None:
        alive = {m.node_id for m in self.e.members} | {self.e.settings.node_id}
        entries = [entry for entry, _ in self.entries.values()]
        self.missing = tuple(
            MissingMember(x.node_id, x.url, x.first_seen, x.missing_since)
            for x in sorted(entries, key=lambda x: x.node_id)
            if x.node_id not in alive
        )
        self.e.note_peers([Member(x.node_id, x.url) for x in entries])

    async def _keep(self) -> bool:
        """The master's upkeep, from the member records as the members loop just read
        them (:attr:`~app.election.cluster.ClusterSteps.member_kvs`): at most
        ``_WRITES_MAX`` writes, each one store call. False when that read failed or on
        a store error."""
        e, term, kvs = self.e, self.e.term, self.e.member_kvs
        if kvs is None:
            return False  # refresh_members reported the store error
        live = {m.node_id: (m, kv) for kv in kvs if (m := decode_member(kv.value)) is not None}
        now = e.wall()
        writes: list[Write] = []
        for node_id in sorted(set(live) | set(self.entries)):
            write = self._plan(node_id, live.get(node_id), now)
            if write is not None:
                writes.append(write)
        try:
            for write in writes[:_WRITES_MAX]:
                await write()
        except StoreError as exc:
            e.store_failed("write roster", exc)
            return False
        if len(writes) <= _WRITES_MAX:
            self.kept_in_term = term
        return True

    def _plan(self, node_id: str, live: tuple[Member, KeyValue] | None, now: float) -> Write | None:
        """The one write ``node_id``'s record needs, or None."""
        known = self.entries.get(node_id)
        entry = known[0] if known else None
        if live is not None:
            member, kv = live
            if entry is None:
                new = RosterEntry(node_id, member.advertise_url, now)
                return lambda: self._create(new, member_key(self.e.settings.cluster, node_id), kv)
            if entry.url != member.advertise_url or entry.missing_since is not None:
                back = replace(entry, url=member.advertise_url, missing_since=None)
                return lambda: self._put(back, f"member {node_id} is back")
            return None
        if entry is None or node_id == self.e.settings.node_id:
            return None
        if entry.missing_since is None:
            gone = replace(entry, missing_since=now)
            return lambda: self._put(gone, f"member {node_id} is missing: no member record")
        limit = self.e.settings.member_forget_after
        if limit > 0 and now - entry.missing_since >= limit:
            assert known is not None
            return lambda: self._drop(entry, known[1], f"missing for more than {limit:g} s")
        return None

    async def _create(self, entry: RosterEntry, guard: str, member: KeyValue) -> None:
        key = roster_key(self.e.settings.cluster, entry.node_id)
        same = {guard: member.create_revision}
        result = await self.e.store.acquire(key, encode_entry(entry), 0, same=same)
        if result.won:
            self.entries[entry.node_id] = (entry, result.create_revision)
            log.info("member %s listed in the roster (%s)", entry.node_id, entry.url)

    async def _put(self, entry: RosterEntry, why: str) -> None:
        key = roster_key(self.e.settings.cluster, entry.node_id)
        await self.e.store.put(key, encode_entry(entry), 0)
        revision = self.entries[entry.node_id][1]
        self.entries[entry.node_id] = (entry, revision)
        log.info("%s (%s)", why, entry.url, extra={"event": "roster", "node": entry.node_id})

    async def _drop(self, entry: RosterEntry, revision: int, why: str) -> None:
        key = roster_key(self.e.settings.cluster, entry.node_id)
        if await self.e.store.resign(key, revision):
            self.entries.pop(entry.node_id, None)
            log.info("member %s forgotten: %s", entry.node_id, why)

    async def forget(self, node_id: str) -> dict[str, Any]:
        """``vipmon member forget``: delete ``node_id``'s roster record.

        Raises :class:`Conflict` while ``node_id`` has a member record (it is
        alive: stop it first) or when the roster does not list it; a store
        error propagates (the admin API answers 503).
        """
        e, cluster = self.e, self.e.settings.cluster
        alive, _ = await e.store.get(member_key(cluster, node_id))
        if alive is not None:
            raise Conflict(f"{node_id} is alive (it has a member record): stop it first")
        kv, _ = await e.store.get(roster_key(cluster, node_id))
        if kv is None:
            raise Conflict(f"{node_id} is not in the roster: nothing to forget")
        if not await e.store.resign(kv.key, kv.create_revision):
            raise Conflict(f"{node_id}'s roster record changed meanwhile; try again")
        self.entries.pop(node_id, None)
        self._derive()
        log.info("member %s forgotten by an operator", node_id)
        e.publish(f"member {node_id} forgotten")
        return {"node": node_id, "forgotten": True}
