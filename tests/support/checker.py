"""Judge a chaos run from the outside: the probe records plus the fault log.

The checker knows nothing of the nodes' internals. It reads what each probe
saw (:class:`tests.support.probe.Probe`: node, request start, response end,
status, term) and what the run did (:class:`Fault`: which fault, on whom,
injected and healed when, on the same monotonic clock as the probes).

The rules, each a promise of the product (README, "Safety"):

* ``term-owner``: a term is answered positive by one node only;
* ``stale``: no positive with term X begins after a positive with a newer term
  Y > X has ended;
* ``cut-off``: no positive from a node cut off from etcd begins later than the
  fault time plus the fault's ``grace`` (the TTL), while the cut lasts;
* ``quorum``: no positive from a node that can reach no etcd quorum (two of
  three members frozen, or only a member cut off from its peers within reach)
  begins later than the fault time plus the fault's ``grace`` (the TTL), while
  the fault lasts: a renewal that only a member without quorum accepted does
  not count;
* ``paused``: a node paused for longer than the TTL never answers positive with
  the term it had before the pause, once it resumes;
* ``recovery``: after a fault heals, a positive answer begins within the
  fault's stated bound.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

from tests.support.probe import Probe, violations


@dataclass(frozen=True)
class Fault:
    """One fault of the run. ``healed == injected`` for instantaneous faults."""

    kind: str
    target: str
    injected: float
    healed: float
    bound: float  # a positive must begin within this many s after ``healed``
    cut_off: tuple[str, ...] = ()  # nodes with no path to etcd meanwhile
    quorum_lost: tuple[str, ...] = ()  # nodes that can reach no etcd quorum meanwhile
    grace: float = 0.0  # ...both may begin a positive only this many s after ``injected``
    paused: str | None = None  # node frozen for longer than the TTL
    detail: str = ""


@dataclass(frozen=True)
class Violation:
    at: float
    rule: str
    message: str


@dataclass
class Verdict:
    """What the checker found; :meth:`report` prints it."""

    probes: int
    positives: int
    faults: Counter[str]
    violations: list[Violation]
    failover: dict[str, list[float]] = field(default_factory=dict)
    kept: Counter[str] = field(default_factory=Counter)
    outage: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self, kinds: Iterable[str] = ()) -> str:
        """The verdict as text; the per-kind tables list ``kinds`` too, even if not drawn."""
        every = sorted({*self.faults, *kinds})
        lines = [
            f"faults injected: {sum(self.faults.values())}",
            *(f"  {kind:<24} {self.faults[kind]}" for kind in every),
            f"probes: {self.probes}",
            f"positives: {self.positives}",
            f"violations: {len(self.violations)}{_by_rule(self.violations)}",
            *(f"  [{v.rule}] at {v.at:.3f}: {v.message}" for v in self.violations[:20]),
            "failover time (fault injected -> first positive of a newer term), seconds:",
        ]
        for kind in every:
            kept = f"  (term kept: {self.kept[kind]})"
            lines.append(f"  {kind:<24} {_spread(self.failover.get(kind, []))}{kept}")
        lines.append("longest time without any positive answer, per fault, seconds:")
        lines += [f"  {k:<24} {_spread(self.outage.get(k, []))}" for k in every]
        return "\n".join(lines)


def _by_rule(found: Sequence[Violation]) -> str:
    counts = Counter(v.rule for v in found).most_common()
    return f" ({', '.join(f'{rule}: {n}' for rule, n in counts)})" if counts else ""


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "none"
    v = sorted(values)
    return f"n={len(v):<3} min={v[0]:6.2f} median={statistics.median(v):6.2f} max={v[-1]:6.2f}"


class _Positives:
    """The positive probes, sorted by start, with the look-ups the rules need."""

    def __init__(self, probes: Sequence[Probe]) -> None:
        self.all = [p for p in probes if p.status == 200]
        self.starts = [p.start for p in self.all]
        by_end = sorted(self.all, key=lambda p: p.end)
        self.ends = [p.end for p in by_end]
        self.newest_by_end = list(accumulate((p.term for p in by_end), max))
        self.by_node: dict[str, list[Probe]] = defaultdict(list)
        for p in self.all:
            self.by_node[p.node].append(p)

    def between(self, a: float, b: float) -> list[Probe]:
        """Positives that start in [a, b)."""
        return self.all[bisect_left(self.starts, a) : bisect_left(self.starts, b)]

    def newest_ended_before(self, t: float) -> int:
        i = bisect_left(self.ends, t)
        return self.newest_by_end[i - 1] if i else 0

    def last_term_of(self, node: str, before: float) -> int | None:
        """The term of ``node``'s last positive that ended before ``before``."""
        ended = [p for p in self.by_node.get(node, []) if p.end < before]
        return ended[-1].term if ended else None


def check(records: Sequence[Probe], faults: Sequence[Fault]) -> Verdict:
    """Apply every rule; ``records`` in any order, ``faults`` in injection order."""
    probes = sorted(records, key=lambda p: p.start)
    pos = _Positives(probes)
    found = [*_term_owner(pos.all), *_stale(pos.all)]
    if not found and (second := violations(probes)):  # probe.py's own reading must agree
        found.extend(Violation(0.0, "probe", message) for message in second)
    end = probes[-1].start if probes else 0.0
    for fault in faults:
        found.extend(_cut_off(pos, fault))
        found.extend(_quorum(pos, fault))
        found.extend(_paused(pos, fault))
        found.extend(_recovery(pos, fault, end))
    verdict = Verdict(
        probes=len(probes),
        positives=len(pos.all),
        faults=Counter(f.kind for f in faults),
        violations=sorted(found, key=lambda v: v.at),
    )
    _failovers(pos, faults, verdict)
    return verdict


def _term_owner(positives: Sequence[Probe]) -> Iterable[Violation]:
    owner: dict[int, str] = {}
    for p in positives:
        if p.term <= 0:
            yield Violation(p.start, "term-owner", f"positive without a term from {p.node}")
        elif owner.setdefault(p.term, p.node) != p.node:
            yield Violation(
                p.start, "term-owner", f"term {p.term} positive on {owner[p.term]} and {p.node}"
            )


def _stale(positives: Sequence[Probe]) -> Iterable[Violation]:
    """For each positive, the newest term of a positive that ended before it began."""
    by_end = sorted(positives, key=lambda p: p.end)
    newest, newest_node, i = 0, "", 0
    for p in positives:  # sorted by start
        while i < len(by_end) and by_end[i].end < p.start:
            if by_end[i].term > newest:
                newest, newest_node = by_end[i].term, by_end[i].node
            i += 1
        if p.term < newest:
            why = f"{p.node} positive with term {p.term} after {newest_node} had term {newest}"
            yield Violation(p.start, "stale", why)


def _cut_off(pos: _Positives, fault: Fault) -> Iterable[Violation]:
    for p in _late_positives(pos, fault, fault.cut_off):
        into = p.start - fault.injected
        why = f"{p.node} positive {into:.3f} s into '{fault.kind}' (bound {fault.grace} s)"
        yield Violation(p.start, "cut-off", why)


def _quorum(pos: _Positives, fault: Fault) -> Iterable[Violation]:
    for p in _late_positives(pos, fault, fault.quorum_lost):
        into = p.start - fault.injected
        why = (
            f"{p.node} positive with term {p.term} {into:.3f} s after losing etcd's quorum "
            f"('{fault.kind}' on {fault.target}); it must be negative within {fault.grace} s"
        )
        yield Violation(p.start, "quorum", why)


def _late_positives(pos: _Positives, fault: Fault, nodes: tuple[str, ...]) -> Iterable[Probe]:
    """Positives of ``nodes`` that begin after ``injected + grace`` and before ``healed``."""
    after = fault.injected + fault.grace
    return (p for p in pos.between(after, fault.healed) if p.node in nodes and p.start > after)


def _paused(pos: _Positives, fault: Fault) -> Iterable[Violation]:
    if fault.paused is None:
        return
    old_term = pos.last_term_of(fault.paused, fault.injected)
    for p in pos.by_node.get(fault.paused, []):
        if p.term == old_term and p.end > fault.healed:
            after = p.end - fault.healed
            why = f"{p.node} positive with its old term {old_term} {after:.3f} s after resuming"
            yield Violation(p.start, "paused", why)


def _recovery(pos: _Positives, fault: Fault, end: float) -> Iterable[Violation]:
    deadline = fault.healed + fault.bound
    i = bisect_left(pos.starts, fault.healed)
    first = pos.starts[i] if i < len(pos.starts) else None
    if first is None and end < deadline:
        return  # the run ended before the bound: nothing to judge
    if first is None or first > deadline:
        took = "never" if first is None else f"after {first - fault.healed:.3f} s"
        yield Violation(
            deadline,
            "recovery",
            f"no positive within {fault.bound} s after '{fault.kind}' on {fault.target} "
            f"healed ({took})",
        )


def _failovers(pos: _Positives, faults: Sequence[Fault], verdict: Verdict) -> None:
    """Per fault, until the next one: the time to the first positive of a newer term,
    and the longest stretch between positive answers."""
    times: dict[str, list[float]] = defaultdict(list)
    outage: dict[str, list[float]] = defaultdict(list)
    last = pos.all[-1].end if pos.all else 0.0
    for i, fault in enumerate(faults):
        until = faults[i + 1].injected if i + 1 < len(faults) else max(last, fault.healed)
        newest = pos.newest_ended_before(fault.injected)
        window = pos.between(fault.injected, until)
        first = next((p for p in window if p.term > newest), None)
        if first is None:
            verdict.kept[fault.kind] += 1
        else:
            times[fault.kind].append(first.start - fault.injected)
        marks = [fault.injected, *(p.start for p in window), until]
        outage[fault.kind].append(max(b - a for a, b in pairwise(marks)))
    verdict.failover, verdict.outage = dict(times), dict(outage)


def timeline(
    records: Sequence[Probe], faults: Sequence[Fault], at: float, window: float = 1.5
) -> str:
    """The probes and faults within ``window`` s of ``at``; equal answers in a row folded."""
    events: list[tuple[float, str]] = []
    for fault in faults:
        for t, what in ((fault.injected, "inject"), (fault.healed, "heal")):
            if abs(t - at) <= window:
                events.append((t, f"--- {what} {fault.kind} on {fault.target} {fault.detail}"))
    runs: dict[str, list[Probe]] = {}
    for p in sorted(records, key=lambda p: p.start):
        if not at - window <= p.start <= at + window:
            continue
        run = runs.get(p.node)
        if run and (run[-1].status, run[-1].term) == (p.status, p.term):
            run.append(p)
            continue
        if run:
            events.append(_fold(run))
        runs[p.node] = [p]
    events.extend(_fold(run) for run in runs.values())
    events.sort()
    return "\n".join(f"{t - at:+8.3f}  {text}" for t, text in events)


def _fold(run: list[Probe]) -> tuple[float, str]:
    first, last = run[0], run[-1]
    return (
        first.start,
        f"{first.node} {first.status} term={first.term} x{len(run)} "
        f"[{first.start:.3f} .. {last.end:.3f}] {first.body[:60]}",
    )
