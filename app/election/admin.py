"""Operator commands, run on the election's event loop.

Each command reads the store fresh, decides, and writes control keys; a
refusal is a :class:`app.errors.Conflict` naming the reason, an unreachable
store a :class:`app.errors.StoreError`. The HTTP layer only forwards.
"""

from __future__ import annotations

import json
from typing import Any

from app.election.control import (
    Switchover,
    can_lead,
    maintenance_key,
    pause_key,
    pick_target,
)
from app.election.elector import Elector
from app.election.history import MAINTENANCE, Ending
from app.election.records import decode_leader, decode_member, members_prefix
from app.errors import Conflict, SwitchoverFailed
from app.role import Member


class AdminCommands:
    """The commands of one node. Every method is a coroutine for the election loop."""

    def __init__(self, elector: Elector) -> None:
        self.e = elector

    async def _members(self) -> tuple[Member, ...]:
        kvs, _ = await self.e.store.get_prefix(members_prefix(self.e.settings.cluster))
        found = (decode_member(kv.value) for kv in kvs)
        return tuple(m for m in found if m is not None)

    async def switchover(self, to: str | None) -> dict[str, Any]:
        """Hand the role to ``to`` (or the best candidate); return once it is master."""
        await self.e.read_control()
        if self.e.control.paused:
            raise Conflict("the cluster is paused; resume it first")
        if self.e.control.switchover is not None:
            raise Conflict("another switchover is in progress")
        kv, _ = await self.e.store.get(self.e.key)
        leader = decode_leader(kv.value) if kv is not None else None
        if kv is None or leader is None:
            raise Conflict("there is no master to switch over from")
        members = await self._members()
        if to is None:
            target = pick_target(members, exclude=leader.node_id)
            if target is None:
                raise Conflict("no other node is eligible")
        else:
            target = next((m for m in members if m.node_id == to), None)
            if target is None:
                raise Conflict(f"target {to} is not alive (no member record)")
            if to == leader.node_id:
                raise Conflict(f"target {to} is already the master")
            if not can_lead(target):
                raise Conflict(f"target {to} is not eligible ({_why_not(target)})")
        record = Switchover(leader.node_id, target.node_id, kv.create_revision)
        async with self.e.handover.lock:
            term, took = await self.e.handover.switchover(record)
        return {
            "from": leader.node_id,
            "to": target.node_id,
            "term": term,
            "took_ms": round(took * 1000, 1),
        }

    async def maintenance(self, enabled: bool, force: bool = False) -> dict[str, Any]:
        """Put this node in maintenance (handing over first if master), or take it out.

        Refused (before anything is written) when it would leave the cluster
        with nobody to lead, unless ``force``: see :meth:`_refuse_last_candidate`.
        """
        e = self.e
        key = maintenance_key(e.settings.cluster, e.settings.node_id)
        held = e.holds_key  # only a node that held the key hands over, and says to whom
        await e.read_control()
        if enabled:
            if e.holds_key and e.control.paused:
                raise Conflict("the cluster is paused; resume it before the master's maintenance")
            if not force:
                await self._refuse_last_candidate()
            await e.store.put(key, json.dumps({"at": e.wall()}).encode(), 0)
        else:
            kv, _ = await e.store.get(key)
            if kv is not None:
                await e.store.resign(key, kv.create_revision)
        await e.read_control()  # the state now, as of a revision after our write
        await e.publish_member()
        e.publish("maintenance on" if enabled else "maintenance off")
        handed_to = None
        if enabled:
            # The master's own duties may already be handing over: the lock
            # makes us wait for that instead of starting a second switchover.
            async with e.handover.lock:
                held = held or e.holds_key
                if e.holds_key:
                    await self._hand_over_for_maintenance()
            handed_to = await self._successor() if held else None
        return {"node": e.settings.node_id, "maintenance": enabled, "handed_over_to": handed_to}

    async def _refuse_last_candidate(self) -> None:
        """Conflict if this node is the last that could be master, by a fresh read.

        That is: this node is the master (it believes it holds the key, or the
        key names it) and no other member can lead; or there is no master at
        all, this node could take the role, and no other member can.
        """
        e, me = self.e, self.e.settings.node_id
        kv, _ = await e.store.get(e.key)
        holder = decode_leader(kv.value) if kv is not None else None
        master = e.holds_key or (holder is not None and holder.node_id == me)
        if not master and (kv is not None or not e.eligible()):
            return
        if pick_target(await self._members(), exclude=me) is not None:
            return
        if master:
            raise Conflict(
                f"{me} is the master and no other node is eligible to take over; "
                "maintenance would leave the cluster without a master (use --force)"
            )
        raise Conflict(
            f"there is no master and {me} is the only node eligible to take the role; "
            "maintenance would leave the cluster without a candidate (use --force)"
        )

    async def _successor(self) -> str | None:
        """The node that holds the key now, if another: the one this node handed over to."""
        kv, _ = await self.e.store.get(self.e.key)
        leader = decode_leader(kv.value) if kv is not None else None
        if leader is not None and leader.node_id != self.e.settings.node_id:
            return leader.node_id
        return None

    async def _hand_over_for_maintenance(self) -> None:
        try:
            await self.e.handover.hand_over(
                "maintenance", Ending(MAINTENANCE), await self._members()
            )
        except SwitchoverFailed as exc:
            raise Conflict(f"maintenance is on, but the hand-over failed: {exc}") from exc

    async def pause(self, paused: bool) -> dict[str, Any]:
        """Pause (no automatic failover, cluster-wide) or resume."""
        e = self.e
        key = pause_key(e.settings.cluster)
        if paused:
            record = {"by": e.settings.node_id, "at": e.wall()}
            await e.store.put(key, json.dumps(record).encode(), 0)
        else:
            kv, _ = await e.store.get(key)
            if kv is not None:
                await e.store.resign(key, kv.create_revision)
        await e.read_control()
        e.publish("cluster paused" if paused else "cluster resumed")
        return {"paused": paused}


def _why_not(member: Member) -> str:
    if member.priority <= 0:
        return "priority 0"
    if member.maintenance:
        return "in maintenance"
    if not member.check_ok:
        return "its local check is failing"
    return "not eligible"
