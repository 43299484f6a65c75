"""Timer arithmetic: how long a failover takes behind an ADC, and whether two nodes can be UP.

An ADC keeps its own view of each node. After the old master's last positive
answer it marks it DOWN within ``D(T_fail)``, where ``T_fail`` is how long one
failing check takes (about 0 when the node answers 503 or the port refuses,
a timeout when the process is stalled or the host is gone). After the new
master turns positive the ADC marks it UP no sooner than ``U_min`` and no
later than ``U_max``. The nodes guarantee a gap ``g >= 0`` between the two
instants, so the ADC shows two nodes UP at once only if

    D(T_fail) > g + U_min.

:func:`assess` evaluates that for every way a master can go, with the lower
bound of ``g`` each case has (a planned hand-over: the settle time), and the
worst-case crash failover ``TTL + expiry lag + U_max``. Check round trips
(milliseconds on a LAN) are left out of every figure; instead a case counts
as safe only with :data:`ROUND_TRIP_ALLOWANCE` to spare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

ETCD_EXPIRY_LAG = 0.5
"""etcd deletes an expired lease up to 500 ms late (its lessor scans every 500 ms)."""

ETCD_ELECTION_TIMEOUT = 1.0
"""etcd's default ``--election-timeout``. When the master's host also held etcd's leader,
etcd elects a new one within about two of them, and the new leader extends every lease
by a full TTL and one more (etcd's own rule), the lost master's included."""

ROUND_TRIP_ALLOWANCE = 0.05
"""The least time to spare a case needs to count as safe: check round trips and the
ADC's timer jitter are left out of the figures, so a closer call is refused."""


@dataclass(frozen=True)
class Bound:
    """A duration and the formula, in the ADC's own timer names, that gives it."""

    formula: str
    seconds: float


@dataclass(frozen=True)
class NodeTiming:
    """The vipmon lease timers the figures assume (``vipmon run`` defaults)."""

    lease_ttl: float = 2.0
    renew_interval: float | None = None
    lease_margin: float = 0.5
    #: ``--settle-time``: on a planned release the old master is negative this long
    #: before it deletes its key, so the new master turns positive no sooner.
    settle_time: float = 0.01

    @property
    def renew(self) -> float:
        return self.renew_interval if self.renew_interval is not None else self.lease_ttl / 4


class CheckTimers(Protocol):
    """What an ADC's timers imply. Every bound is measured as described in the module doc."""

    def down_within(self, t_fail: float) -> Bound:
        """Latest DOWN after the last positive answer, when a failing check takes ``t_fail``."""
        ...

    def up_no_sooner(self) -> Bound:
        """Earliest UP after the node turns positive."""
        ...

    def up_within(self) -> Bound:
        """Latest UP after the node turns positive."""
        ...

    def failing_checks(self) -> tuple[Bound, Bound]:
        """How long one check takes to fail against (a stalled process, a vanished host)."""
        ...


@dataclass(frozen=True)
class Case:
    """One way a master goes: the least gap the nodes guarantee, and T_fail."""

    name: str
    gap: Bound
    t_fail: float


@dataclass(frozen=True)
class Assessment:
    """The figures for one set of timers.

    ``safe``: in every case the new master is UP at least
    :data:`ROUND_TRIP_ALLOWANCE` later than the old one is DOWN. ``overlap``: the
    longest time two can be UP (0 when ``safe``; a case closer than the allowance,
    which round trips decide, is unsafe with ``overlap`` 0).
    """

    safe: bool
    overlap: float
    failover: float
    lines: tuple[str, ...]


def seconds(value: float) -> str:
    """``1 s``, ``0.5 s``, ``2.25 s``: no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{text} s"


def cases(checks: CheckTimers, node: NodeTiming) -> list[Case]:
    """Every way a master goes, with the gap ``g`` the lease rules guarantee for it."""
    stalled, vanished = checks.failing_checks()
    ttl = f"TTL - keepalive = {seconds(node.lease_ttl - node.renew)}"
    after_crash = Bound(ttl, node.lease_ttl - node.renew)
    return [
        Case(
            "planned handover",
            Bound(f"settle {seconds(node.settle_time)}", node.settle_time),
            0.0,
        ),
        Case(
            "master lost the store",
            Bound(f"margin {seconds(node.lease_margin)}", node.lease_margin),
            0.0,
        ),
        Case("master killed", after_crash, 0.0),
        Case(f"process stalled (T_fail {seconds(stalled.seconds)})", after_crash, stalled.seconds),
        Case(f"host vanished (T_fail {seconds(vanished.seconds)})", after_crash, vanished.seconds),
    ]


def assess(checks: CheckTimers, node: NodeTiming) -> Assessment:
    """Evaluate the worst-case failover and the overlap of ``checks`` for ``node``."""
    stalled, vanished = checks.failing_checks()
    up_min, up_max = checks.up_no_sooner(), checks.up_within()
    down_formula = checks.down_within(0.0).formula
    expiry = node.lease_ttl + ETCD_EXPIRY_LAG
    failover = max(expiry + up_max.seconds, checks.down_within(vanished.seconds).seconds)
    lines = [
        f"Timer arithmetic (vipmon lease TTL {seconds(node.lease_ttl)}, keepalive every "
        f"{seconds(node.renew)}, margin {seconds(node.lease_margin)}, settle "
        f"{seconds(node.settle_time)}; round trips left out):",
        f"  old master DOWN <= {down_formula} after its last positive answer",
        f"  new master UP   >= {up_min.formula} = {seconds(up_min.seconds)} after it turns "
        "positive",
        f"                  <= {up_max.formula} = {seconds(up_max.seconds)}",
        f"  T_fail: about 0 on a 503 or a refused port; stalled process: {stalled.formula} = "
        f"{seconds(stalled.seconds)}; vanished host: {vanished.formula} = "
        f"{seconds(vanished.seconds)}",
        "Worst case from a master crash to all VIP traffic on the new master:",
        f"  max(TTL + {seconds(ETCD_EXPIRY_LAG)} etcd expiry lag + {seconds(up_max.seconds)}, "
        f"old DOWN {seconds(checks.down_within(vanished.seconds).seconds)}) = "
        f"{seconds(failover)}",
        f"  and if its host also held etcd's leader: + 3 x {seconds(ETCD_ELECTION_TIMEOUT)} "
        "etcd election timeout (a new etcd leader within two, which extends every lease by "
        f"one more) = {seconds(failover + 3 * ETCD_ELECTION_TIMEOUT)}",
    ]
    least, most = planned_gap(checks, node)
    lines += [
        "A planned hand-over (switchover, maintenance, SIGTERM) leaves no server UP for",
        f"  settle + new UP - old DOWN: {seconds(least)} to {seconds(most)} (plus the release's "
        "round trips).",
    ]
    rows = []
    overlap, safe = 0.0, True
    for case in cases(checks, node):
        down = checks.down_within(case.t_fail).seconds
        up = case.gap.seconds + up_min.seconds
        overlap = max(overlap, down - up)
        safe = safe and up - down >= ROUND_TRIP_ALLOWANCE
        if up - down >= ROUND_TRIP_ALLOWANCE:
            verdict = f"{seconds(up - down)} to spare"
        elif down < up:
            verdict = f"TOO CLOSE: only {seconds(up - down)}, under the allowance"
        else:
            verdict = f"TWO UP for {seconds(down - up)}"
        rows.append((case.name, case.gap.formula, seconds(down), seconds(up), verdict))
    if safe:
        lines.append(
            "Two servers UP at once: never, in every case below (each clears a "
            f"{seconds(ROUND_TRIP_ALLOWANCE)} allowance for round trips)."
        )
    else:
        lines.append(f"Two servers UP at once: YES, for up to {seconds(overlap)}.")
    lines.append("  case: new positive after >= g | old DOWN by | new UP no sooner | verdict")
    lines.extend(
        f"  {name}: g {gap} | {down} | {up} | {verdict}" for name, gap, down, up, verdict in rows
    )
    return Assessment(safe, overlap, failover, tuple(lines))


@dataclass(frozen=True)
class HaproxyTimers:
    """``inter fastinter downinter rise fall`` with ``timeout check`` and ``timeout connect``."""

    inter: float = 1.0
    fastinter: float = 1.0
    downinter: float = 1.0
    rise: int = 3
    fall: int = 1
    timeout_check: float = 0.5
    timeout_connect: float = 1.0

    def down_within(self, t_fail: float) -> Bound:
        base = self.inter + (self.fall - 1) * self.fastinter
        return Bound(
            f"inter + (fall - 1) x fastinter + fall x T_fail = {seconds(base)} + "
            f"{self.fall} x T_fail",
            base + self.fall * t_fail,
        )

    def up_no_sooner(self) -> Bound:
        return Bound("(rise - 1) x fastinter", (self.rise - 1) * self.fastinter)

    def up_within(self) -> Bound:
        return Bound(
            "downinter + (rise - 1) x fastinter", self.downinter + (self.rise - 1) * self.fastinter
        )

    def failing_checks(self) -> tuple[Bound, Bound]:
        return (
            Bound("timeout check", self.timeout_check),
            Bound(
                "min(timeout connect, inter) + timeout check",
                min(self.timeout_connect, self.inter) + self.timeout_check,
            ),
        )


@dataclass(frozen=True)
class F5Timers:
    """An F5 HTTP monitor: ``interval timeout time-until-up`` in whole seconds."""

    interval: int = 1
    timeout: int = 4
    time_until_up: int = 5

    def down_within(self, t_fail: float) -> Bound:
        return Bound("timeout (F5 waits that long for any good answer)", float(self.timeout))

    def up_no_sooner(self) -> Bound:
        return Bound("time-until-up", float(self.time_until_up))

    def up_within(self) -> Bound:
        steps = math.ceil(self.time_until_up / self.interval)
        return Bound(
            "interval + time-until-up (rounded up to whole intervals)",
            float(self.interval + steps * self.interval),
        )

    def failing_checks(self) -> tuple[Bound, Bound]:
        return (Bound("timeout", float(self.timeout)), Bound("timeout", float(self.timeout)))


@dataclass(frozen=True)
class NginxPlusTimers:
    """NGINX Plus ``health_check interval jitter fails passes`` and the proxy timeouts."""

    interval: float = 1.0
    jitter: float = 0.0
    fails: int = 1
    passes: int = 3
    connect_timeout: float = 0.5
    read_timeout: float = 0.5

    def down_within(self, t_fail: float) -> Bound:
        step = self.interval + self.jitter
        return Bound(
            f"fails x (interval + jitter + T_fail) = {self.fails} x ({seconds(step)} + T_fail)",
            self.fails * (step + t_fail),
        )

    def up_no_sooner(self) -> Bound:
        return Bound("(passes - 1) x interval", (self.passes - 1) * self.interval)

    def up_within(self) -> Bound:
        return Bound("passes x (interval + jitter)", self.passes * (self.interval + self.jitter))

    def failing_checks(self) -> tuple[Bound, Bound]:
        return (
            Bound("proxy_read_timeout", self.read_timeout),
            Bound("proxy_connect_timeout", self.connect_timeout),
        )


def passive_lines(node: NodeTiming, tries: int, connect_timeout: float) -> tuple[str, ...]:
    """The figures for open-source nginx's passive pattern: it keeps no UP state at all."""
    expiry = node.lease_ttl + ETCD_EXPIRY_LAG
    return (
        f"Timer arithmetic (vipmon lease TTL {seconds(node.lease_ttl)}):",
        "Worst case from a master crash to VIP traffic on the new master:",
        f"  TTL + {seconds(ETCD_EXPIRY_LAG)} etcd expiry lag = {seconds(expiry)}. nginx adds no "
        "delay of its own; a request",
        "  that first tries a vanished host waits proxy_connect_timeout = "
        f"{seconds(connect_timeout)} more.",
        "Two servers UP at once: not applicable. nginx keeps no UP/DOWN state (max_fails=0):",
        "  a request is served only by a node whose application accepted it, and with",
        f"  proxy_next_upstream_tries = {tries} it tries every node, so it reaches the master",
        "  whenever there is one.",
    )


@dataclass(frozen=True)
class CaddyTimers:
    """Caddy 2.6 active checks: ``health_interval health_timeout``, and ``dial_timeout``.

    Caddy 2.6 has no rise or fall (``health_passes``/``health_fails`` came in 2.7): one
    failed check marks an upstream unhealthy, one passing check healthy again.
    """

    interval: float = 1.0
    timeout: float = 0.5
    dial_timeout: float = 1.0

    def down_within(self, t_fail: float) -> Bound:
        return Bound(
            f"health_interval + T_fail = {seconds(self.interval)} + T_fail",
            self.interval + t_fail,
        )

    def up_no_sooner(self) -> Bound:
        return Bound("0 (one passing check, which may come at once)", 0.0)

    def up_within(self) -> Bound:
        return Bound("health_interval", self.interval)

    def failing_checks(self) -> tuple[Bound, Bound]:
        timeout = Bound("health_timeout", self.timeout)
        return (timeout, timeout)


def fenced_lines(node: NodeTiming, connect_timeout: float) -> tuple[str, ...]:
    """The figures for a fenced cluster behind an ADC that keeps no UP state (nginx)."""
    expiry = node.lease_ttl + ETCD_EXPIRY_LAG
    return (
        f"Timer arithmetic (vipmon lease TTL {seconds(node.lease_ttl)}):",
        "Worst case from a master crash to VIP traffic on the new master:",
        f"  TTL + {seconds(ETCD_EXPIRY_LAG)} etcd expiry lag = {seconds(expiry)}",
        "  (the new master opens its port when it takes the lease; nginx tries it on the",
        "  next request, since it never passes a node over). A request that first tries",
        f"  a vanished host waits proxy_connect_timeout = {seconds(connect_timeout)} more.",
        "Two nodes serving at once: never, by the fence: every node without the lease",
        "  refuses new connections with a TCP reset, whatever nginx believes.",
    )


def planned_gap(checks: CheckTimers, node: NodeTiming) -> tuple[float, float]:
    """A planned hand-over's time with no server UP at the ADC: (least, most), round trips out.

    The old master is negative at ``t0``; the ADC marks it DOWN between 0 and
    ``down_within(0)`` later. The new master turns positive at ``t0 + settle``
    and is UP between ``up_no_sooner`` and ``up_within`` after that.
    """
    down = checks.down_within(0.0).seconds
    least = node.settle_time + checks.up_no_sooner().seconds - down
    most = node.settle_time + checks.up_within().seconds
    return max(0.0, least), most


#: The timer profiles of ``vipmon adc-config --profile``. ``conservative`` (the
#: default): whole seconds, as shipped from the start. ``fast``: sub-second checks (a
#: few a second per node, trivial for the probe path), chosen with the nodes' default
#: 10 ms settle time so that no way a master goes holds two servers UP. An explicit
#: timer flag overrides its profile value; the arithmetic then judges the result.
PROFILE_NAMES = ("conservative", "fast")

HAPROXY_PROFILES = {
    "conservative": HaproxyTimers(),
    "fast": HaproxyTimers(
        inter=0.2,
        fastinter=0.25,
        downinter=0.2,
        rise=2,
        fall=1,
        timeout_check=0.15,
        timeout_connect=0.2,
    ),
}

NGINX_PLUS_PROFILES = {
    "conservative": NginxPlusTimers(),
    "fast": NginxPlusTimers(
        interval=0.2, jitter=0.0, fails=1, passes=3, connect_timeout=0.15, read_timeout=0.15
    ),
}


CADDY_PROFILES = {
    "conservative": CaddyTimers(),
    "fast": CaddyTimers(interval=0.2, timeout=0.15, dial_timeout=0.2),
}


def f5_profile(profile: str, interval: int) -> F5Timers:
    """F5's timers for ``interval``: conservative ``timeout 3i+1``, fast ``2i+1`` (one
    lost probe is still not an outage); time-until-up ``timeout + i`` in both."""
    timeout = (2 if profile == "fast" else 3) * interval + 1
    return F5Timers(interval, timeout, timeout + interval)
