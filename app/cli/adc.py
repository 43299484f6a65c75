"""``vipmon adc-config``: print a load balancer's config for the nodes (:mod:`app.adc`).

The flags are passed to :func:`app.adc.build.build` as they are; it checks them and
renders. Exit status: 0 with the config on stdout; 2 with one line
``vipmon adc-config: argument --X: reason`` on stderr for a bad argument (argparse's
own errors also exit 2).
"""

from __future__ import annotations

import argparse
import sys

from app.adc.build import TARGETS, build
from app.adc.model import AdcError
from app.adc.timers import PROFILE_NAMES
from app.cli.common import EXIT_OK, EXIT_USAGE, Subparsers

_DESCRIPTION = """\
Print a ready config for an ADC in front of the nodes: HAProxy (haproxy, and
haproxy-state for its server-state seed), F5 BIG-IP tmsh commands (f5), NGINX
Plus active checks (nginx-plus), open-source nginx's passive pattern (nginx) or
a Caddy 2 Caddyfile (caddy). The config starts with comments giving, for the
chosen timers, the worst-case failover time and whether the ADC can ever hold
two servers UP at once; timers that allow that are refused unless
--allow-overlap is given. --fenced is for nodes run with --fence-port: nodes
without the lease refuse connections, so the config retries on the next node
(nginx: round-robin over all nodes, no checks) and the overlap is not refused.
"""


def add_parser(sub: Subparsers) -> None:
    """Add ``adc-config`` to ``sub``: the target and topology, then one group per concern."""
    p = sub.add_parser(
        "adc-config", help="print a load balancer config for the nodes", description=_DESCRIPTION
    )
    for add_flags in (_add_topology, _add_timers, _add_haproxy, _add_names, _add_tls, _add_lease):
        add_flags(p)
    p.add_argument(
        "--allow-overlap",
        action="store_true",
        help="accept timers that can hold two servers UP at once",
    )
    p.set_defaults(func=print_adc_config)


def _add_topology(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=TARGETS)
    p.add_argument("--vip", metavar="HOST:PORT", help="address the ADC serves the VIP on")
    p.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT[/MONITOR_PORT]",
        help="a node: its application address, and its monitor port (repeatable)",
    )
    p.add_argument(
        "--monitor-port", type=int, metavar="N", help="vipmon's port on every node (default 8700)"
    )
    p.add_argument(
        "--fenced",
        action="store_const",
        const=True,
        help="the nodes run with --fence-port: retry a refused connection on the next node "
        "(haproxy, nginx, caddy)",
    )
    p.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        help="timer defaults: conservative (whole seconds, the default) or fast "
        "(sub-second checks); explicit timer flags override them",
    )


def _add_timers(p: argparse.ArgumentParser) -> None:
    timers = p.add_argument_group("check timers (seconds; each applies to some targets)")
    timers.add_argument("--interval", type=float, help="between checks (default 1)")
    timers.add_argument("--fastinter", type=float, help="HAProxy, while changing state")
    timers.add_argument("--downinter", type=float, help="HAProxy, while DOWN")
    timers.add_argument("--rise", type=int, help="passes to go UP (default 3)")
    timers.add_argument("--fall", type=int, help="failures to go DOWN (default 1)")
    timers.add_argument(
        "--timeout", type=float, help="check reply timeout (default 0.5; F5: 3 x interval + 1)"
    )
    timers.add_argument(
        "--connect-timeout",
        type=float,
        help="HAProxy/nginx/Caddy connect (default 1; nginx --fenced 0.5)",
    )
    timers.add_argument(
        "--time-until-up",
        type=float,
        help="F5: good answers needed this long (default timeout + interval)",
    )
    timers.add_argument("--jitter", type=float, help="NGINX Plus check jitter (default 0)")
    timers.add_argument("--tries", type=int, help="nginx: proxy_next_upstream_tries (nodes)")
    timers.add_argument(
        "--try-duration",
        type=float,
        help="Caddy: lb_try_duration (default: the crash failover, rounded up)",
    )
    timers.add_argument("--try-interval", type=float, help="Caddy: lb_try_interval (default 0.1)")


def _add_haproxy(p: argparse.ArgumentParser) -> None:
    hap = p.add_argument_group("HAProxy")
    hap.add_argument(
        "--check",
        choices=("status", "drain", "agent"),
        help="status 200 only (default), DRAINING as NOLB, or with agent-check",
    )
    hap.add_argument("--agent-port", type=int, help="vipmon's agent port (--check agent)")
    hap.add_argument("--agent-interval", type=float, help="agent-inter (default --interval)")
    hap.add_argument("--mode", choices=("tcp", "http"), help="proxy mode (default tcp)")
    hap.add_argument("--stats-socket", help="runtime API socket path")
    hap.add_argument("--state-file", help="server-state file path, or 'none'")


def _add_names(p: argparse.ArgumentParser) -> None:
    names = p.add_argument_group("names")
    names.add_argument("--name", help="prefix of every object name (default vipmon)")
    names.add_argument("--host-header", help="Host header of the checks (default vipmon)")
    names.add_argument("--partition", help="F5 partition (default Common)")


def _add_tls(p: argparse.ArgumentParser) -> None:
    tls = p.add_argument_group("checks over TLS (vipmon run --tls-cert-file; paths on the ADC)")
    tls.add_argument(
        "--tls", action="store_const", const=True, help="check vipmon's port over HTTPS"
    )
    tls.add_argument("--ca-file", help="CA that signed the nodes' certificates (required)")
    tls.add_argument("--tls-server-name", help="SNI sent and name required in the certificate")
    tls.add_argument("--client-cert", help="client certificate (HAProxy: with its key)")
    tls.add_argument("--client-key", help="its key (F5, NGINX Plus)")


def _add_lease(p: argparse.ArgumentParser) -> None:
    lease = p.add_argument_group("the nodes' lease timers, for the figures")
    lease.add_argument("--lease-ttl", type=float, help="default 2")
    lease.add_argument("--renew-interval", type=float, help="default TTL/4")
    lease.add_argument("--lease-margin", type=float, help="default 0.5")
    lease.add_argument("--settle-time", type=float, help="the nodes' --settle-time (default 0.01)")


def print_adc_config(args: argparse.Namespace) -> int:
    """Print the config for ``args``; exit status 0, or 2 naming a bad argument."""
    try:
        text = build(args)
    except AdcError as exc:
        print(f"vipmon adc-config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(text)
    return EXIT_OK
