"""Cluster-wide control keys and the candidate policy built on them.

Operators steer the election through keys under ``/vipmon/<cluster>/control/``:

* ``pause``: ``{"by", "at"}``. No node takes a free role (no automatic
  failover); a master keeps its role for as long as it holds its lease. No
  lease: it stays until resume.
* ``switchover``: ``{"from", "to", "term"}``, bound to a lease of its own that
  is never renewed (see :mod:`app.election.handover`). The master named
  ``from`` with that term hands over; only ``to`` may take the role while the
  key exists; the new master deletes it.
* ``maintenance/<node>``: ``{"at"}``. That node is not eligible and hands over
  if master. No lease, so it survives a restart of the node.

``at`` is the wall-clock instant the operator's command wrote the key (since
when it is on, as ``/metrics`` reports it); a key without one (written by an
earlier release) is dated when this node first saw it (:func:`date_unknown`).

Every acquire carries the blocking keys in its own transaction (the store's
``absent`` and ``same`` guards), so a pause or a switchover written a moment
earlier is never raced past. The policy functions here are pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from app.election.records import json_object, wall_time
from app.role import Member
from app.store.base import KeyValue


def control_prefix(cluster: str) -> str:
    return f"/vipmon/{cluster}/control/"


def pause_key(cluster: str) -> str:
    return control_prefix(cluster) + "pause"


def switchover_key(cluster: str) -> str:
    return control_prefix(cluster) + "switchover"


def maintenance_key(cluster: str, node_id: str) -> str:
    return control_prefix(cluster) + "maintenance/" + node_id


@dataclass(frozen=True)
class Switchover:
    """A planned hand-over from ``from_id`` (at ``term``) to ``to_id``."""

    from_id: str
    to_id: str
    term: int
    create_revision: int = 0

    def encode(self) -> bytes:
        return json.dumps({"from": self.from_id, "to": self.to_id, "term": self.term}).encode()


@dataclass(frozen=True)
class ControlState:
    """What the control keys said at the last read, and that read's store ``revision``.

    Several loops and admin commands read the control keys; a slower read must
    not overwrite a newer one, so only a state of a revision at least as high
    replaces the one held (:meth:`app.election.cluster.ClusterSteps.take_control`).
    """

    paused: bool = False
    switchover: Switchover | None = None
    maintenance: frozenset[str] = field(default_factory=frozenset)
    garbage: tuple[str, ...] = ()
    revision: int = 0
    #: Since when (wall clock) the pause and each node's maintenance are on, when known.
    paused_at: float | None = None
    maintenance_at: tuple[tuple[str, float], ...] = ()

    def maintenance_since(self, node_id: str) -> float | None:
        return dict(self.maintenance_at).get(node_id)


def decode_control(cluster: str, kvs: list[KeyValue], revision: int = 0) -> ControlState:
    """Fold the control keys into a state. Unreadable values are listed, not fatal.

    An unreadable switchover record still blocks other candidates (the key
    exists); it just names nobody, so nobody acts on it until it expires.
    """
    paused, switchover, maintenance, garbage = False, None, set(), []
    paused_at, maintenance_at = None, []
    maint_prefix = maintenance_key(cluster, "")
    for kv in kvs:
        if kv.key == pause_key(cluster):
            paused, paused_at = True, _written_at(kv)
        elif kv.key == switchover_key(cluster):
            switchover = _decode_switchover(kv)
            if switchover is None:
                garbage.append(kv.key)
                switchover = Switchover("", "", 0, kv.create_revision)
        elif kv.key.startswith(maint_prefix):
            node_id = kv.key[len(maint_prefix) :]
            maintenance.add(node_id)
            at = _written_at(kv)
            if at is not None:
                maintenance_at.append((node_id, at))
    return ControlState(
        paused,
        switchover,
        frozenset(maintenance),
        tuple(garbage),
        revision,
        paused_at,
        tuple(sorted(maintenance_at)),
    )


def _written_at(kv: KeyValue) -> float | None:
    data = json_object(kv.value)
    return wall_time(data.get("at")) if data is not None else None


def date_unknown(new: ControlState, held: ControlState, now: float) -> ControlState:
    """``new`` with a time for each key on that carries none: the one ``held`` knew, or
    ``now`` (wall clock) for a key seen for the first time."""
    paused_at = new.paused_at
    if new.paused and paused_at is None:
        paused_at = held.paused_at if held.paused and held.paused_at is not None else now
    dated = dict(new.maintenance_at)
    for node_id in new.maintenance - dated.keys():
        known = held.maintenance_since(node_id)
        dated[node_id] = known if known is not None else now
    return replace(new, paused_at=paused_at, maintenance_at=tuple(sorted(dated.items())))


def _decode_switchover(kv: KeyValue) -> Switchover | None:
    data = json_object(kv.value)
    if data is None:
        return None
    src, dst, term = data.get("from"), data.get("to"), data.get("term")
    if not isinstance(src, str) or not isinstance(dst, str) or not isinstance(term, int):
        return None
    if isinstance(term, bool):
        return None
    return Switchover(src, dst, term, kv.create_revision)


def acquire_guards(
    cluster: str, node_id: str, control: ControlState
) -> tuple[list[str], dict[str, int]]:
    """The guards of ``node_id``'s acquire: keys that must be absent, and keys that must
    still be the very record read (by create_revision).

    The pause key must always be absent. The switchover key must be absent too,
    unless the last read showed a record naming ``node_id`` as the target: then
    that exact record must still be there, so a read that has gone stale (the
    record withdrawn, a newer one naming another node) can never exempt us.
    """
    record = control.switchover
    if record is not None and record.to_id == node_id and record.create_revision > 0:
        return [pause_key(cluster)], {switchover_key(cluster): record.create_revision}
    return [pause_key(cluster), switchover_key(cluster)], {}


def can_lead(member: Member) -> bool:
    """Eligible by its own record: priority above 0, not in maintenance, check passing."""
    return member.eligible and member.priority > 0 and not member.maintenance and member.check_ok


def campaign_delay(priority: int, node_id: str, members: tuple[Member, ...], step: float) -> float:
    """How long a candidate waits before campaigning for a free role.

    ``step`` seconds for every other member that could lead and has a higher
    priority, so that the highest-priority live candidate goes first.
    """
    higher = sum(
        1 for m in members if m.node_id != node_id and can_lead(m) and m.priority > priority
    )
    return higher * step


def pick_target(members: tuple[Member, ...], exclude: str) -> Member | None:
    """The best hand-over target: highest priority that can lead, then lowest id."""
    candidates = [m for m in members if m.node_id != exclude and can_lead(m)]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (-m.priority, m.node_id))
