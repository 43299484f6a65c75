"""The closed set of roles and the frozen snapshot that routes read.

The election loop publishes a new :class:`Snapshot` whenever what it knows
changes. The snapshot never says "master" by itself: :meth:`Snapshot.role_at`
derives the role at the instant of the question, from monotonic deadlines, so
a snapshot that is not refreshed (a stalled loop, a frozen process) decays to
a negative answer on its own.
"""

from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass, field
from typing import Protocol


class Role(enum.StrEnum):
    """What a node says about itself. Only ``MASTER`` is positive.

    No token is a substring of another, and none is ``OK``.
    """

    MASTER = "MASTER"
    STANDBY = "STANDBY"
    UNKNOWN = "UNKNOWN"
    DRAINING = "DRAINING"
    MAINTENANCE = "MAINTENANCE"


@dataclass(frozen=True)
class Transition:
    """One change of role, as logged."""

    at_wall: float
    from_role: Role
    to_role: Role
    reason: str


@dataclass(frozen=True)
class Member:
    """A member record as read from the store."""

    node_id: str
    advertise_url: str
    version: str = ""
    started_at: float = 0.0
    eligible: bool = True
    priority: int = 100
    maintenance: bool = False
    check_ok: bool = True


@dataclass(frozen=True)
class MissingMember:
    """A member the roster lists (see :mod:`app.election.roster`) with no member record:
    crashed, stopped, or cut off from the store.

    ``missing_since``: when the master saw its member record gone (its lease had
    run out, up to a TTL after it stopped renewing); None until a master has.
    """

    node_id: str
    url: str
    first_seen: float
    missing_since: float | None = None


@dataclass(frozen=True)
class TermRecord:
    """One term as ``/history`` shows it (see :mod:`app.election.history`).

    ``gap`` is the seconds from the previous term's end to this term's first
    positive answer, when both are known. ``gap_max``, when the previous term
    ended by its lease running out (a crash), is the most the outage can have
    lasted: the real gap lies between the two. None when the end is exact.
    """

    term: int
    node_id: str
    url: str
    began: float | None
    ended: float | None
    how: str | None
    to: str | None
    detail: str
    gap: float | None = None
    gap_max: float | None = None


@dataclass(frozen=True)
class Snapshot:
    """What the election loop knows, frozen at one instant.

    ``holds_key`` with ``term`` means our acquire transaction succeeded and we
    have not seen the key go. ``lease_valid_until`` is the fail-closed
    deadline ``t_send + TTL - margin`` of the last grant or keepalive.
    ``store_ok_until`` bounds how long a standby may trust what it last read.
    ``stop_flag`` is the node's own stop event, shared by every snapshot it
    publishes: once set (from any thread) no snapshot of the node is positive,
    old or new, so a stop can never be undone by a publish racing it.
    ``draining`` is set for the whole of a planned release; ``drain_on_stop``
    says that a stop drains (``drain_time`` > 0), so the node answers DRAINING
    from the instant the stop flag is set, before the release publishes.
    """

    node_id: str
    backend: str
    #: This process: its advertise URL and when it started (wall clock). Two
    #: processes started with one ``--node-id`` tell apart by these.
    advertise_url: str = ""
    started_at: float = 0.0
    #: The store server's name and version as last read (``Store.server_version``).
    store_version: str = ""
    holds_key: bool = False
    term: int = 0
    lease_valid_until: float = 0.0
    #: With a kernel fence: until when the kernel surely lets new connections in
    #: (``inf`` without a fence), and why the fence failed, if it did.
    fence_until: float = math.inf
    fence_error: str | None = None
    store_ok_until: float = 0.0
    store_reachable: bool = False
    leader_id: str | None = None
    leader_url: str | None = None
    leader_term: int = 0
    leader_unknown: bool = False
    draining: bool = False
    shutting_down: bool = False
    maintenance: bool = False
    paused: bool = False
    #: Since when (wall clock) this node's maintenance and the cluster's pause are on;
    #: None while off.
    maintenance_since: float | None = None
    paused_since: float | None = None
    priority: int = 100
    eligible: bool = True
    check_configured: bool = False
    check_ok: bool = True
    check_detail: str = ""
    members: tuple[Member, ...] = ()
    #: Members the roster lists that have no member record, by id.
    missing: tuple[MissingMember, ...] = ()
    #: Every member URL this node has seen since it started (ours too), capped:
    #: the origins whose pages may read this node's JSON (the status page's fallback).
    peer_urls: frozenset[str] = frozenset()
    #: The cluster's terms as last read from the store, newest first.
    history: tuple[TermRecord, ...] = ()
    last_transition: Transition | None = None
    loop_heartbeat: float = 0.0
    stop_flag: threading.Event | None = field(default=None, compare=False, repr=False)
    drain_on_stop: bool = False

    @property
    def stopping(self) -> bool:
        """Shutting down: told so at publication, or the stop flag is set since."""
        return self.shutting_down or (self.stop_flag is not None and self.stop_flag.is_set())

    def is_master(self, now: float) -> bool:
        """Positive only while we hold the key, our lease deadline is ahead and, with
        a fence, the kernel still lets new connections in."""
        return (
            self.holds_key
            and not self.draining
            and not self.stopping
            and now < self.lease_valid_until
            and now < self.fence_until
            and self.fence_error is None
        )

    def role_at(self, now: float) -> Role:
        """The role at monotonic instant ``now``; fails closed."""
        if self.is_master(now):
            return Role.MASTER
        draining = self.draining or (self.drain_on_stop and self.stopping)
        if self.holds_key and draining and now < self.lease_valid_until:
            return Role.DRAINING
        if self.stopping or self.holds_key:
            return Role.UNKNOWN
        if self.maintenance:
            return Role.MAINTENANCE
        if now >= self.store_ok_until or self.leader_unknown:
            return Role.UNKNOWN
        return Role.STANDBY

    def store_ready(self, now: float) -> bool:
        """The store answered recently enough to trust (``/health/ready``)."""
        return self.store_reachable and now < self.store_ok_until

    def lease_remaining(self, now: float) -> float:
        """Seconds of validity left on our lease, never negative."""
        return max(0.0, self.lease_valid_until - now)


class NodeView(Protocol):
    """What readers of a node's state hold: one frozen snapshot, replaced whole."""

    @property
    def snapshot(self) -> Snapshot: ...
