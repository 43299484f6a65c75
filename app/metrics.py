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

Metrics counted as events happen:

* ``vipmon_transitions_total{from,to,reason}`` - ``reason`` is a short slug
* ``vipmon_renew_latency_seconds`` - histogram of keepalive round trips
* ``vipmon_store_errors_total{kind}``
* ``vipmon_probes_total{path,code}`` - counted by :attr:`Metrics.probes`
  (:class:`app.probe.counts.ProbeCounts`, no lock), read at scrape time

:meth:`Metrics.render` does no I/O; the recording methods are thread-safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.checks import CheckState
from app.clock import Clock
from app.probe.counts import ProbeCounts
from app.role import NodeView, Role, Transition

# Text format 0.0.4, which every Prometheus version reads; prometheus-client's
# CONTENT_TYPE_LATEST names 1.0.0 in recent releases.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RENEW_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLUG_WORDS = 6


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
        self, view: NodeView, clock: Clock, check_state: Callable[[], CheckState] | None
    ) -> None:
        self.view, self.clock, self.check_state = view, clock, check_state

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        snap = self.view.snapshot
        now = self.clock.now()
        role = snap.role_at(now)
        is_master, by_role, term, remaining, check_up = families
        is_master.add_metric([], 1.0 if role is Role.MASTER else 0.0)
        for each in Role:
            by_role.add_metric([each.value], 1.0 if each is role else 0.0)
        term.add_metric([], float(snap.term))
        remaining.add_metric([], snap.lease_remaining(now) if snap.holds_key else 0.0)
        up = self.check_state is None or self.check_state().ok
        check_up.add_metric([], 1.0 if up else 0.0)
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
        ]


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

    ``check_state`` returns the local check verdict; without it
    ``vipmon_check_up`` is 1.
    """

    def __init__(
        self,
        view: NodeView,
        clock: Clock,
        *,
        check_state: Callable[[], CheckState] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_ScrapeTimeCollector(view, clock, check_state))
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
