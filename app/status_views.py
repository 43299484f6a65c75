"""``vipmon status``'s rows: from the ``/cluster`` and ``/role`` answers to one view per process.

Pure, no I/O. :func:`targets` lists the URLs to ask (the members ``/cluster``
lists, its missing members, then the seeds it does not list);
:func:`member_views` turns each one's ``/role`` answer (or why there is none)
into a :class:`MemberView`, one per process: a process reached at two URLs is
one row, two processes that answer with one node id are two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.role import Role
from app.settings import base_url
from app.verdict import duplicate_ids

UNREACHABLE = "UNREACHABLE"

#: A GET's outcome: the JSON object it answered, or why there is none.
Answer = dict[str, Any] | str


@dataclass(frozen=True)
class Target:
    """A URL to ask ``/role``: a member ``/cluster`` lists (``listed_as``) or a seed.

    ``problem`` says why it is not asked at all (a member URL that is not a node API).
    ``missing``: ``/cluster`` lists it as missing (no member record), since
    ``missing_since`` (ISO 8601, "" if not known).
    """

    url: str
    listed_as: str | None = None
    problem: str = ""
    missing: bool = False
    missing_since: str = ""


@dataclass(frozen=True)
class MemberView:
    """What one node says about itself in its own ``/role``, or that it does not answer.

    ``node`` is the id it answers with, else the id ``/cluster`` lists at its URL,
    else ``?``. ``role`` is its Role token, or ``UNREACHABLE`` with ``error``.
    ``listed``: ``/cluster`` lists it (a member, not only a seed); ``missing``, with no
    member record since ``missing_since``. ``process_url`` and ``started_at`` are what
    it says of its process in ``/role`` ("" from an older release): two processes with
    one node id differ in them.
    """

    node: str
    url: str
    role: str
    error: str = ""
    listed: bool = False
    process_url: str = ""
    started_at: str = ""
    missing: bool = False
    missing_since: str = ""
    term: int = 0
    lease_ms: int = 0
    leader: str | None = None
    leader_unknown: bool = False
    backend: str = ""
    store_ok: bool = False
    store_version: str = ""
    maintenance: bool = False
    paused: bool = False
    priority: int = 100
    eligible: bool = True
    check_configured: bool = False
    check_ok: bool = True
    check_detail: str = ""
    note: str = ""

    @property
    def reachable(self) -> bool:
        return self.role != UNREACHABLE


def pick_cluster(seeds: Sequence[str], answers: Mapping[str, Answer]) -> tuple[str, Answer]:
    """The first seed whose ``/cluster`` answered, with its answer; else the first failure."""
    for seed in seeds:
        answer = answers.get(seed, "not asked")
        if isinstance(answer, dict):
            return seed, answer
    return seeds[0], answers.get(seeds[0], "not asked")


def targets(seeds: Sequence[str], cluster: Answer) -> list[Target]:
    """Every member URL ``/cluster`` lists, then every missing member's, then every seed
    it does not list."""
    found: list[Target] = []
    for kind in ("members", "missing"):
        listed = cluster.get(kind) if isinstance(cluster, dict) else None
        for member in listed if isinstance(listed, list) else []:
            if isinstance(member, dict):
                _add_target(found, member, missing=kind == "missing")
    found.extend(Target(seed) for seed in seeds if all(t.url != seed for t in found))
    return found


def _add_target(found: list[Target], member: Mapping[str, Any], missing: bool) -> None:
    node_id, since = member.get("id"), member.get("missing_since") if missing else ""
    listed_as = node_id if isinstance(node_id, str) and node_id else None
    raw = member.get("url")
    target = Target("", listed_as, "", missing, since if isinstance(since, str) else "")
    try:
        url = base_url(raw) if isinstance(raw, str) else ""
    except ValueError as exc:
        found.append(replace(target, url=str(raw), problem=f"bad URL in /cluster: {exc}"))
        return
    if not url:
        found.append(replace(target, problem="no URL in /cluster"))
    elif all(t.url != url for t in found):
        found.append(replace(target, url=url))


def _value(data: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    value = data.get(name)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    return default


def _part(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def member_view(target: Target, answer: Answer) -> MemberView:
    """One node's view from its ``/role`` answer (a dict) or the reason it has none (a str)."""
    fallback, listed = target.listed_as or "?", target.listed_as is not None
    silent = MemberView(
        fallback,
        target.url,
        UNREACHABLE,
        listed=listed,
        missing=target.missing,
        missing_since=target.missing_since,
    )
    if target.problem:
        return replace(silent, error=target.problem)
    if isinstance(answer, str):
        return replace(silent, error=answer)
    role = answer.get("role")
    if role not in {r.value for r in Role}:
        return replace(silent, error=f"/role has no valid 'role': {role!r}")
    node = _value(answer, "node", str, "") or fallback
    note = ""
    if target.listed_as and node != target.listed_as:
        note = f"/cluster lists {target.listed_as} at this URL"
    leader = _part(answer, "leader").get("id")
    backend, check = _part(answer, "backend"), _part(answer, "check")
    return MemberView(
        node=node,
        url=target.url,
        role=str(role),
        listed=listed,
        process_url=_value(answer, "url", str, ""),
        started_at=_value(answer, "started_at", str, ""),
        missing=target.missing,
        missing_since=target.missing_since,
        term=_value(answer, "term", int, 0),
        lease_ms=_value(answer, "lease_remaining_ms", int, 0),
        leader=leader if isinstance(leader, str) and leader else None,
        leader_unknown=_value(answer, "leader_unknown", bool, False),
        backend=_value(backend, "name", str, ""),
        store_ok=_value(backend, "reachable", bool, False),
        store_version=_value(backend, "version", str, ""),
        maintenance=_value(answer, "maintenance", bool, False),
        paused=_value(answer, "paused", bool, False),
        priority=_value(answer, "priority", int, 100),
        eligible=_value(answer, "eligible", bool, True),
        check_configured=_value(check, "configured", bool, False),
        check_ok=_value(check, "ok", bool, True),
        check_detail=_value(check, "detail", str, ""),
        note=note,
    )


def _process(view: MemberView) -> tuple[str | None, str | None]:
    """(advertise URL, start) of the process behind a view; None where it is not known.

    A node that answers says both (an older release neither); a listed member
    that does not answer is at the URL its member record gives.
    """
    if view.reachable:
        return view.process_url or None, view.started_at or None
    return (view.url or None) if view.listed else None, None


def _same_process(a: MemberView, b: MemberView) -> bool:
    if a.node != b.node or a.node == "?":
        return False
    pairs = zip(_process(a), _process(b), strict=True)
    return all(x is None or y is None or x == y for x, y in pairs)


def member_views(found: Sequence[Target], roles: Mapping[str, Answer]) -> list[MemberView]:
    """One view per process, sorted by id: a process reached at two URLs (a seed and its
    advertise URL) is shown once; two processes answering with one node id are both
    shown, each noting the other's URL."""
    views: list[MemberView] = []
    for target in found:
        view = member_view(target, roles.get(target.url, "not asked"))
        at = next((i for i, old in enumerate(views) if _same_process(old, view)), None)
        if at is None:
            views.append(view)
        elif view.reachable and not views[at].reachable:
            old = views[at]
            views[at] = replace(
                view,
                listed=view.listed or old.listed,
                missing=view.missing or old.missing,
                missing_since=view.missing_since or old.missing_since,
            )
    twins = duplicate_ids(views)
    for i, view in enumerate(views):
        others = [url for url in twins.get(view.node, []) if url != view.url]
        if view.reachable and others:
            also = f"node id {view.node} also answers at {', '.join(others)}"
            views[i] = replace(view, note="; ".join(filter(None, [view.note, also])))
    named = sorted((v for v in views if v.node != "?"), key=lambda v: v.node)
    return named + [v for v in views if v.node == "?"]
