"""Prometheus metrics in the text exposition format, made with prometheus-client.

Everything lives on a :class:`~prometheus_client.CollectorRegistry` of the
:class:`Metrics` object, never on the global one, so several nodes (or tests)
in one process do not mix.

Metrics read at scrape time, from the node's snapshot and the monotonic clock
(a custom collector, so nothing is stale):

* ``vipmon_is_master`` - 1 exactly when ``/monitor`` would answer 200 now
* ``vipmon_role{role}`` - 1 for the current role, 0 for every other role
* ``vipmon_term`` - the term the node reports
* ``vipmon_lease_remaining_seconds`` - validity left on our lease, 0 if we hold no key
* ``vipmon_check_up`` - 1 while the local check passes (or none is configured)
* ``vipmon_store_up`` - 1 while the store answers (as ``/health/ready``)
* ``vipmon_eligible`` - 1 while this node may take the role
* ``vipmon_info{cluster,node,version}`` - always 1: the labels rules group by
* ``vipmon_lease_ttl_seconds`` - the lease TTL, from which the rules derive their
  thresholds
* ``vipmon_term_started_timestamp_seconds`` - when the term this node reports began
  (its master's first positive answer, wall clock); 0 while not known
* ``vipmon_maintenance_since_timestamp_seconds``,
  ``vipmon_paused_since_timestamp_seconds`` - since when this node's maintenance and
  the cluster's pause are on (wall clock); 0 while off
* ``vipmon_fence_configured``, ``vipmon_fence_open``, ``vipmon_fence_error`` - the
  kernel fence: configured; the kernel surely lets new connections in now; it failed

Metrics counted as events happen:

* ``vipmon_transitions_total{from,to,reason}`` - ``reason`` is a short slug
* ``vipmon_renew_latency_seconds`` - histogram of keepalive round trips
* ``vipmon_store_errors_total{kind}``
* ``vipmon_probes_total{path,code}`` - counted by :attr:`Metrics.probes`
  (:class:`app.probe.counts.ProbeCounts`, no lock), read at scrape time
* ``vipmon_failover_gap_seconds`` - histogram of the gap before each term this
  process won, observed once per term at the first scrape whose snapshot's history
  knows it (:class:`_FailoverGaps`)

:meth:`Metrics.render` does no I/O; the recording methods are thread-safe.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from app import __version__
from app.checks import CheckState
from app.clock import Clock
from app.election.history import EXPIRY_SLACK
from app.probe.counts import ProbeCounts
from app.role import NodeView, Role, Snapshot, Transition
from app.settings import Settings

# Text format 0.0.4, which every Prometheus version reads; prometheus-client's
# CONTENT_TYPE_LATEST names 1.0.0 in recent releases.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RENEW_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
GAP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds a new master may take, beyond the store's expiry of the old lease, to turn
#: positive: its priority delay (0.2 s per live higher-priority member), the acquire
#: round trips and the two nodes' clock skew. The alert rules use the same allowance.
CAMPAIGN_ALLOWANCE = 1.0
_SLUG_WORDS = 6


def crash_gap_bound(lease_ttl: float) -> float:
    """The longest a crash's failover takes: the store deletes the key within
    ``TTL + EXPIRY_SLACK`` of the master's last renewal, then a standby campaigns."""
    return lease_ttl + EXPIRY_SLACK + CAMPAIGN_ALLOWANCE


@dataclass(frozen=True)
class NodeInfo:
    """What the node is, fixed at start: ``vipmon_info``'s labels and its timers."""

    cluster: str
    node_id: str
    lease_ttl: float
    fence_configured: bool = False
    version: str = __version__

    @classmethod
    def from_settings(cls, settings: Settings) -> NodeInfo:
        return cls(
            settings.cluster,
            settings.node_id,
            float(settings.lease_ttl),
            fence_configured=bool(settings.fence_port),
        )


def reason_slug(reason: str) -> str:
    """A low-cardinality label for a free-text reason.

    Keeps the words before the first ``(`` or ``:``, letters only, at most six,
    joined by ``_``: ``"acquired the leader key (term 7)"`` becomes
    ``"acquired_the_leader_key"``. Empty input gives ``"unknown"``.
    """
    head = re.split(r"[(:]", reason, maxsplit=1)[0]
    words = re.findall(r"[a-z]+", head.lower())[:_SLUG_WORDS]
    return "_".join(words) or "unknown"


class _ScrapeTimeCollector:
    """Computes the gauges that derive from the snapshot at the instant of a scrape."""

    def __init__(
        self,
        view: NodeView,
        clock: Clock,
        info: NodeInfo,
        check_state: Callable[[], CheckState] | None,
    ) -> None:
        self.view, self.clock, self.info, self.check_state = view, clock, info, check_state

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        snap = self.view.snapshot
        now = self.clock.now()
        role = snap.role_at(now)
        is_master, by_role, term, remaining, check_up, store_up, eligible = families[:7]
        is_master.add_metric([], 1.0 if role is Role.MASTER else 0.0)
        for each in Role:
            by_role.add_metric([each.value], 1.0 if each is role else 0.0)
        term.add_metric([], float(snap.term))
        remaining.add_metric([], snap.lease_remaining(now) if snap.holds_key else 0.0)
        up = self.check_state is None or self.check_state().ok
        check_up.add_metric([], 1.0 if up else 0.0)
        store_up.add_metric([], _flag(snap.store_ready(now)))
        eligible.add_metric([], _flag(snap.eligible))
        info, ttl, began, maintenance, paused, fenced, fence_open, fence_error = families[7:]
        info.add_metric([self.info.cluster, self.info.node_id, self.info.version], 1.0)
        ttl.add_metric([], self.info.lease_ttl)
        began.add_metric([], term_began(snap) or 0.0)
        maintenance.add_metric([], _since(snap.maintenance, snap.maintenance_since))
        paused.add_metric([], _since(snap.paused, snap.paused_since))
        fenced.add_metric([], _flag(self.info.fence_configured))
        fence_open.add_metric([], _flag(self.info.fence_configured and now < snap.fence_until))
        fence_error.add_metric([], _flag(snap.fence_error is not None))
        yield from families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("vipmon_is_master", "1 if /monitor answers 200 at this instant"),
            GaugeMetricFamily("vipmon_role", "1 for this node's current role", labels=["role"]),
            GaugeMetricFamily("vipmon_term", "The term this node reports"),
            GaugeMetricFamily(
                "vipmon_lease_remaining_seconds", "Validity left on our lease; 0 without the key"
            ),
            GaugeMetricFamily("vipmon_check_up", "1 while the local health check passes"),
            GaugeMetricFamily("vipmon_store_up", "1 while the store answers this node"),
            GaugeMetricFamily("vipmon_eligible", "1 while this node may take the master role"),
            GaugeMetricFamily(
                "vipmon_info",
                "Always 1: the node's cluster, id and version",
                labels=["cluster", "node", "version"],
            ),
            GaugeMetricFamily("vipmon_lease_ttl_seconds", "The lease TTL"),
            GaugeMetricFamily(
                "vipmon_term_started_timestamp_seconds",
                "When the reported term's master first answered positive (Unix time); 0 unknown",
            ),
            GaugeMetricFamily(
                "vipmon_maintenance_since_timestamp_seconds",
                "Since when this node is in maintenance (Unix time); 0 while off",
            ),
            GaugeMetricFamily(
                "vipmon_paused_since_timestamp_seconds",
                "Since when the cluster is paused (Unix time); 0 while not paused",
            ),
            GaugeMetricFamily("vipmon_fence_configured", "1 if the kernel fence is configured"),
            GaugeMetricFamily(
                "vipmon_fence_open", "1 while the kernel surely lets new connections in"
            ),
            GaugeMetricFamily("vipmon_fence_error", "1 while the kernel fence has failed"),
        ]


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


def _since(on: bool, since: float | None) -> float:
    return since if on and since is not None else 0.0


def term_began(snap: Snapshot) -> float | None:
    """When the term the snapshot reports began, by its history; for a master whose begin
    record is not back from the store yet, the wall time of its own transition."""
    record = next((r for r in snap.history if r.term == snap.term), None)
    if record is not None and record.began is not None:
        return record.began
    last = snap.last_transition
    if snap.holds_key and last is not None and last.to_role is Role.MASTER:
        return last.at_wall
    return None


class _FailoverGaps:
    """``vipmon_failover_gap_seconds``: the gap before each term this process won.

    Each term's gap is observed once, by the new master, at the first scrape whose
    snapshot's history holds it: after a planned hand-over the exact gap, after a crash
    its upper bound (``failover_gap_max_ms`` of ``/history``), as the real outage lies
    between the two. The buckets include :func:`crash_gap_bound` for the node's TTL.
    Scrapes are its only writer; the lock orders two at once.
    """

    def __init__(self, view: NodeView, info: NodeInfo) -> None:
        self.view, self.node_id = view, info.node_id
        buckets = sorted(
            {*GAP_BUCKETS, info.lease_ttl + EXPIRY_SLACK, crash_gap_bound(info.lease_ttl)}
        )
        self.histogram = Histogram(
            "vipmon_failover_gap_seconds",
            "Time without a master before each term this node won",
            buckets=buckets,
            registry=None,
        )
        self.last_term = 0
        self.lock = threading.Lock()

    def describe(self) -> Iterator[Metric]:
        yield from self.histogram.describe()

    def collect(self) -> Iterator[Metric]:
        self.observe_new(self.view.snapshot)
        yield from self.histogram.collect()

    def observe_new(self, snap: Snapshot) -> None:
        with self.lock:
            for record in reversed(snap.history):  # newest first: oldest first here
                mine = record.node_id == self.node_id and record.url == snap.advertise_url
                if record.term <= self.last_term or not mine or record.began is None:
                    continue
                if record.began < snap.started_at:
                    continue  # won by an earlier process of this node
                gap = record.gap_max if record.gap_max is not None else record.gap
                if gap is None:
                    continue
                self.histogram.observe(max(0.0, gap))
                self.last_term = record.term


class _ProbeCollector:
    """``vipmon_probes_total``, from the lock-free counts at the instant of a scrape."""

    def __init__(self, counts: ProbeCounts) -> None:
        self.counts = counts

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for (path, code), value in sorted(self.counts.snapshot().items()):
            family.add_metric([path, str(code)], float(value))
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "vipmon_probes", "Monitor probes answered", labels=["path", "code"]
        )


class Metrics:
    """The node's metrics on a registry of its own.

    ``info``: the node's cluster, id and timers. ``check_state`` returns the
    local check verdict; without it ``vipmon_check_up`` is 1.
    """

    def __init__(
        self,
        view: NodeView,
        clock: Clock,
        info: NodeInfo,
        *,
        check_state: Callable[[], CheckState] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_ScrapeTimeCollector(view, clock, info, check_state))
        self._transitions = Counter(
            "vipmon_transitions",
            "Role transitions of this node",
            ["from", "to", "reason"],
            registry=self.registry,
        )
        self._renew_latency = Histogram(
            "vipmon_renew_latency_seconds",
            "Lease keepalive round trip",
            buckets=RENEW_BUCKETS,
            registry=self.registry,
        )
        self._store_errors = Counter(
            "vipmon_store_errors", "Failed store calls", ["kind"], registry=self.registry
        )
        #: Probe answers; the probe routes add to it directly.
        self.probes = ProbeCounts()
        self.registry.register(_ProbeCollector(self.probes))
        self.registry.register(_FailoverGaps(view, info))

    def transition(self, t: Transition, term: int = 0) -> None:
        """Count one role transition.

        ``term`` is accepted so that this object fits the elector's observer
        protocol; it is not a label (``vipmon_term`` reads the snapshot).
        """
        self._transitions.labels(t.from_role.value, t.to_role.value, reason_slug(t.reason)).inc()

    def renew_latency(self, seconds: float) -> None:
        """Observe one keepalive round trip, in seconds."""
        self._renew_latency.observe(seconds)

    def store_error(self, kind: str) -> None:
        """Count one failed store call; ``kind`` is a short fixed word (e.g. ``keepalive``)."""
        self._store_errors.labels(kind).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type (text format 0.0.4)."""
        return generate_latest(self.registry), CONTENT_TYPE
