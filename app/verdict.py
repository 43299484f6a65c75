"""``vipmon status``'s verdict: from every node's own view to the cluster line and the exit status.

Pure functions over :class:`app.status_views.MemberView` rows, no I/O: :func:`verdict`
gives the cluster line and the exit status, :func:`why_no_master` the reason
there is no master, :func:`problems` what keeps a cluster with a master from
being healthy, :func:`store_lines` the store server's version under it.

Exit status: 0 one node answers MASTER and nothing is wrong; 1 no node could be
read; 2 usage (the CLI's); 3 no master; 4 more than one MASTER (a split); 5 one
MASTER, but a member is missing or does not answer, or a node id answers from
two processes. A split outranks everything, then no master, then degraded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.role import Role
from app.store.etcd_version import lease_bug_warning

if TYPE_CHECKING:
    from app.status_views import MemberView

EXIT_MASTER = 0
EXIT_UNREAD = 1
EXIT_USAGE = 2
EXIT_NO_MASTER = 3
EXIT_SPLIT = 4
EXIT_DEGRADED = 5


@dataclass(frozen=True)
class Verdict:
    """The cluster line and the exit status it stands for."""

    code: int
    line: str


def verdict(views: Sequence[MemberView]) -> Verdict:
    """Exactly one MASTER answer is a master (degraded if :func:`problems` finds any);
    none is 'no master: why'; two or more a split."""
    answered = [v for v in views if v.reachable]
    if not answered:
        return Verdict(EXIT_UNREAD, "no master: no node answers")
    masters = [v for v in answered if v.role == Role.MASTER]
    if len(masters) == 1:
        line = f"master: {masters[0].node} (term {masters[0].term})"
        found = problems(views)
        if found:
            return Verdict(EXIT_DEGRADED, f"{line}, but {'; '.join(found)}")
        return Verdict(EXIT_MASTER, line)
    if masters:
        who = ", ".join(f"{v.node} (term {v.term})" for v in masters)
        return Verdict(
            EXIT_SPLIT,
            f"SPLIT: {len(masters)} nodes answer MASTER: {who}. This should never happen: "
            "take all but one out of the load balancer's pool now, then check the store",
        )
    reasons = [why_no_master(views), *_twin_words(views)]
    return Verdict(EXIT_NO_MASTER, "no master: " + "; ".join(reasons))


def duplicate_ids(views: Sequence[MemberView]) -> dict[str, list[str]]:
    """Each node id that more than one answering process gives, with their URLs."""
    urls: dict[str, list[str]] = {}
    for view in views:
        if view.reachable and view.node != "?":
            urls.setdefault(view.node, []).append(view.url)
    return {node: found for node, found in urls.items() if len(found) > 1}


def _twin_words(views: Sequence[MemberView]) -> list[str]:
    return [
        f"node id {node} answers from {len(urls)} processes ({', '.join(urls)}): "
        "give each node its own --node-id"
        for node, urls in duplicate_ids(views).items()
    ]


def problems(views: Sequence[MemberView]) -> list[str]:
    """Why a cluster with a master is not healthy: a node id used by two processes, a
    member that is missing (listed with no member record), or a member that
    ``/cluster`` lists and that does not answer. Empty when healthy."""
    found = _twin_words(views)
    missing = [v for v in views if v.missing]
    if len(missing) == 1:
        gone = missing[0]
        since = f" since {_when(gone.missing_since)}" if gone.missing_since else ""
        found.append(
            f"{gone.node} is missing (no member record{since}; "
            f"`vipmon member forget {gone.node}` once it is gone for good)"
        )
    elif missing:
        found.append(
            f"{_names(missing)} are missing (no member record; "
            "`vipmon member forget NODE` for each one gone for good)"
        )
    silent = [v for v in views if v.listed and not v.reachable and not v.missing]
    if silent:
        found.append(f"{_names(silent)} {'is' if len(silent) == 1 else 'are'} UNREACHABLE")
    return found


def missing_words(view: MemberView) -> str:
    """A missing member's note: ``missing since 2026-12-06 05:00:01Z (no member record)``."""
    since = f" since {_when(view.missing_since)}" if view.missing_since else ""
    return f"missing{since} (no member record)"


def _when(iso: str) -> str:
    """An ISO 8601 time as ``2026-12-06 05:00:01Z``; the text itself if it is not one."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


_STORE_HINTS = {
    "etcd": "etcd quorum lost or etcd down",
    "local": "the state directory cannot be used",
}


def _names(views: Sequence[MemberView]) -> str:
    return ", ".join(v.node for v in views)


def _leader_named(answered: Sequence[MemberView]) -> str | None:
    """The leader the nodes name; when they differ, the one named with the highest term."""
    named = [(v.term, v.leader) for v in answered if v.leader]
    return max(named, key=lambda pair: pair[0])[1] if named else None


def _about_leader(leader: str, views: Sequence[MemberView], paused: bool) -> str:
    """Why the node the leader key names is not master: gone, lapsed, or letting go."""
    holder = next((v for v in views if v.node == leader), None)
    then = "; no node takes over while paused" if paused else ", then another node takes over"
    if holder is None:
        return f"the leader key still names {leader}, which was not asked"
    if not holder.reachable:
        return (
            f"the leader key still names {leader}, which does not answer "
            f"(its lease runs out within the TTL{then})"
        )
    if holder.role == Role.UNKNOWN:
        return (
            f"the leader key names {leader}, which answers UNKNOWN (its lease lapsed or "
            f"it cannot reach the store; the key goes within the TTL{then})"
        )
    return f"the leader key names {leader}, which answers {holder.role}: a hand-over is in progress"


def _why_ineligible(view: MemberView) -> str:
    reasons = []
    if view.maintenance:
        reasons.append("in maintenance")
    if not view.check_ok:
        reasons.append("check failing")
    if view.priority <= 0:
        reasons.append("priority 0")
    return f"{view.node} " + (" and ".join(reasons) or "not eligible")


def why_no_master(views: Sequence[MemberView]) -> str:
    """Why no node answers MASTER, worked out from what the nodes answered."""
    answered = [v for v in views if v.reachable]
    if not answered:
        return "no node answers"
    paused = any(v.paused for v in answered)
    lost = [v for v in answered if not v.store_ok]
    reasons: list[str] = []
    if len(lost) == len(answered):
        backends = sorted({v.backend for v in answered if v.backend})
        hint = "; ".join(_STORE_HINTS.get(b, f"{b} down") for b in backends) or "store down"
        reasons.append(f"the store is unreachable from every node that answered ({hint})")
    elif draining := [v for v in answered if v.role == Role.DRAINING]:
        reasons.append(
            f"{_names(draining)} is DRAINING (a planned hand-over: "
            "another node takes the role once it lets go)"
        )
    elif any(v.leader_unknown for v in answered):
        reasons.append(
            "the leader key holds a value vipmon cannot read "
            "(nobody takes over until it is deleted or its lease ends)"
        )
    elif (leader := _leader_named(answered)) is not None:
        reasons.append(_about_leader(leader, views, paused))
    elif all(not v.eligible for v in answered):
        why = ", ".join(_why_ineligible(v) for v in answered)
        reasons.append(f"no eligible node ({why})")
    elif not paused:
        reasons.append("an election is in progress (no node holds the leader key yet)")
    if paused:
        reasons.append("the cluster is paused (automatic failover is off until `vipmon resume`)")
    if lost and len(lost) < len(answered):
        reasons.append(f"the store is unreachable from {_names(lost)}")
    return "; ".join(reasons)


def store_lines(views: Sequence[MemberView]) -> list[str]:
    """``store: etcd 3.4.23`` (per node when they differ), then a warning line for each
    etcd release with known lease bugs. Nothing from nodes that do not say."""
    by_version: dict[str, list[str]] = {}
    for view in views:
        if view.reachable and view.store_version:
            by_version.setdefault(view.store_version, []).append(view.node)
    if not by_version:
        return []
    answered = [v for v in views if v.reachable]
    if len(by_version) == 1 and len(next(iter(by_version.values()))) == len(answered):
        lines = [f"store: {next(iter(by_version))}"]
    else:
        parts = [f"{version} ({', '.join(nodes)})" for version, nodes in by_version.items()]
        lines = ["store: " + ", ".join(parts)]
    for version in by_version:
        name, _, number = version.partition(" ")
        if name == "etcd" and (warning := lease_bug_warning(number)):
            lines.append(f"warning: {warning}")
    return lines
