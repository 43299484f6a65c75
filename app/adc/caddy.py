"""Caddy 2 configs (a Caddyfile) that send the VIP to the node whose ``/monitor`` is positive.

One site on the VIP with one ``reverse_proxy`` over every node's application
address. Active health checks (``health_*``) ask each node's ``/monitor`` and
keep only the master healthy; ``lb_try_duration``/``lb_try_interval`` make a
request that finds no healthy node, or whose connection a node refused, try
again (on the next node, ``lb_policy round_robin``) instead of failing at once.

Caddy 2.6 (Debian 12) marks an upstream healthy on one passing check and has no
rise setting, so without the kernel fence its view can hold two nodes healthy
for up to ``health_interval``: the arithmetic in :mod:`app.adc.build` refuses
that unless the nodes' settle time covers it or the cluster is fenced
(``CaddyConfig.fenced``), where a node without the lease refuses connections
and the retry finds the master.

Rendering never fails; arguments are validated in :mod:`app.adc.build`.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.adc.model import AdcNode, Endpoint
from app.adc.text import duration, header
from app.adc.timers import CaddyTimers


@dataclass(frozen=True)
class CaddyConfig:
    """Everything one Caddyfile needs. ``health_port``: None when it is the app port."""

    vip: Endpoint
    nodes: tuple[AdcNode, ...]
    timers: CaddyTimers
    try_duration: float
    try_interval: float
    fenced: bool = False
    health_port: int | None = None
    host_header: str = "vipmon"


def _notes(config: CaddyConfig) -> list[str]:
    notes = [
        "Check: GET /monitor on each node's monitor port every health_interval, with the",
        "Host header below; only status 200 with the body token ROLE=MASTER passes, which",
        "only the master sends. Caddy 2.6 has no rise or fall: one failed check takes a",
        "node out, one passing check puts it back, and a node counts as healthy until a",
        "check says otherwise (also just after a start or reload).",
        "Retries: a request that finds no healthy node, or whose connection a node refused",
        "or reset before the request was sent, is tried again every lb_try_interval until",
        "lb_try_duration has passed, then answered 502/503. Caddy retries such a dial",
        "failure for every method (nothing reached the node); a failure after the request",
        "was sent is retried for GET only (Caddy's default; keep it so for requests that",
        "are not safe to repeat). round_robin sends each retry to the next node.",
        "No passive checks (fail_duration): a standby that refused one request would be",
        "passed over for that long after it became master.",
    ]
    if config.fenced:
        notes += [
            "",
            "Fenced cluster (vipmon run --fence-port on every node): a node without the",
            "master lease refuses new connections to the application port with a TCP reset",
            "and, with --fence-established reset, resets the established ones. So two nodes",
            "never serve at once, whatever Caddy's checks believe: a node Caddy still counts",
            "healthy after it lost the lease only costs a refused connection and a retry.",
            "The checks only spare those round trips.",
        ]
    else:
        notes += [
            "",
            "Not fenced: Caddy's view alone keeps the old master out, and with no rise the",
            "new master can be healthy at its first check. The nodes' --settle-time must",
            "exceed health_interval (the arithmetic below); fencing the cluster",
            "(--fenced, vipmon run --fence-port) removes that condition.",
        ]
    return notes


def _health_lines(config: CaddyConfig) -> list[str]:
    t = config.timers
    lines = [
        "# Active checks: vipmon's /monitor, 200 and ROLE=MASTER on the master only.",
        "health_uri /monitor",
    ]
    if config.health_port is not None:
        lines.append(f"health_port {config.health_port}")
    lines += [
        "# A check every health_interval; one that has no answer in health_timeout fails.",
        f"health_interval {duration(t.interval)}",
        f"health_timeout {duration(t.timeout)}",
        "health_status 200",
        "health_body ROLE=MASTER",
        "health_headers {",
        f"\tHost {config.host_header}",
        "}",
    ]
    return lines


def _proxy_lines(config: CaddyConfig) -> list[str]:
    lines = [
        "# Each retry goes to the next node; a request keeps trying every lb_try_interval",
        "# for up to lb_try_duration (it covers a crash failover, so requests wait for the",
        "# new master instead of failing).",
        "lb_policy round_robin",
        f"lb_try_duration {duration(config.try_duration)}",
        f"lb_try_interval {duration(config.try_interval)}",
        "",
        *_health_lines(config),
        "",
        "# A node that does not answer a connect (host gone) costs dial_timeout per try.",
        "transport http {",
        f"\tdial_timeout {duration(config.timers.dial_timeout)}",
        "}",
    ]
    return [f"\t\t{line}" if line else "" for line in lines]


def render(config: CaddyConfig, figures: tuple[str, ...], command: str) -> str:
    """The Caddyfile text, figures included as comments. ``caddy fmt`` leaves it as it is."""
    state = "fenced" if config.fenced else "not fenced"
    lines = header(
        f"vipmon: Caddyfile for Caddy 2.6+ on the VIP {config.vip} ({state}).",
        command,
        _notes(config),
        figures,
    )
    upstreams = " ".join(str(n.app) for n in config.nodes)
    lines += [
        "",
        "# Plain HTTP on the VIP's port, any Host; for TLS put your domain in place of http://.",
        f"http://:{config.vip.port} {{",
        f"\tbind {config.vip.host}",
        f"\treverse_proxy {upstreams} {{",
        *_proxy_lines(config),
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"
