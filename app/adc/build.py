"""Turn parsed ``adc-config`` arguments into a config text, validating every value.

:func:`build` is the whole contract: it returns the text to print, or raises
:class:`~app.adc.model.AdcError` naming the first bad argument and why.
Timers that would let the ADC hold two servers UP at once are refused unless
``--allow-overlap`` is given (the bench uses it for HAProxy's defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
from collections.abc import Callable

from app.adc import caddy, f5, haproxy, nginx
from app.adc.model import (
    AdcError,
    AdcNode,
    TlsCheck,
    check_name,
    parse_endpoint,
    parse_nodes,
    require_ip,
)
from app.adc.timers import (
    CADDY_PROFILES,
    HAPROXY_PROFILES,
    NGINX_PLUS_PROFILES,
    ROUND_TRIP_ALLOWANCE,
    Assessment,
    CaddyTimers,
    F5Timers,
    HaproxyTimers,
    NginxPlusTimers,
    NodeTiming,
    assess,
    f5_profile,
    fenced_lines,
    passive_lines,
)

STATE_FILE = "/var/lib/haproxy/vipmon-servers.state"
TARGETS = ("haproxy", "haproxy-state", "f5", "nginx-plus", "nginx", "caddy")

# Which target-specific options each target takes (the rest must stay unset).
_HAPROXY = {
    "profile",
    "interval",
    "fastinter",
    "downinter",
    "rise",
    "fall",
    "timeout",
    "connect_timeout",
    "check",
    "agent_port",
    "agent_interval",
    "mode",
    "stats_socket",
    "state_file",
    "host_header",
    "fenced",
}
_TLS = {"tls", "ca_file", "tls_server_name", "client_cert", "client_key"}
APPLIES = {
    "haproxy": _HAPROXY | _TLS,
    "haproxy-state": _HAPROXY | _TLS,
    "f5": {"profile", "interval", "timeout", "time_until_up", "partition", "host_header"} | _TLS,
    "nginx-plus": {"profile", "interval", "jitter", "rise", "fall", "timeout", "host_header"}
    | _TLS,
    "nginx": {"connect_timeout", "tries", "fenced"},
    "caddy": {
        "profile",
        "interval",
        "timeout",
        "connect_timeout",
        "try_duration",
        "try_interval",
        "host_header",
        "fenced",
    },
}
SPECIFIC = set().union(*APPLIES.values())
_HOST_HEADER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]"
)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _positive(args: argparse.Namespace, dest: str, default: float) -> float:
    value = getattr(args, dest)
    if value is None:
        return default
    if not value > 0:
        raise AdcError(_flag(dest), f"{value} must be greater than 0")
    return float(value)


def _count(args: argparse.Namespace, dest: str, default: int, least: int = 1) -> int:
    value = getattr(args, dest)
    if value is None:
        return default
    if value < least:
        raise AdcError(_flag(dest), f"{value} must be at least {least}")
    return int(value)


def _whole(args: argparse.Namespace, dest: str, default: int, least: int) -> int:
    value = getattr(args, dest)
    if value is None:
        return default
    if value != int(value) or value < least:
        raise AdcError(_flag(dest), f"{value}: F5 takes whole seconds, at least {least}")
    return int(value)


def _check_applies(args: argparse.Namespace) -> None:
    if args.target == "nginx" and args.tls:
        raise AdcError(
            "--tls", "does not apply to nginx: the passive and fenced patterns never check vipmon"
        )
    if args.target == "caddy" and args.tls:
        raise AdcError(
            "--tls",
            "does not apply to caddy: its checks share the upstream transport, so TLS to "
            "the monitor port would apply to the VIP traffic too",
        )
    for dest in sorted(SPECIFIC - APPLIES[args.target]):
        if getattr(args, dest) is not None:
            raise AdcError(_flag(dest), f"does not apply to {args.target}")


def _node_timing(args: argparse.Namespace) -> NodeTiming:
    ttl = _positive(args, "lease_ttl", 2.0)
    settle = args.settle_time if args.settle_time is not None else NodeTiming.settle_time
    if settle < 0:
        raise AdcError("--settle-time", f"{settle} must not be negative")
    timing = NodeTiming(ttl, args.renew_interval, _positive(args, "lease_margin", 0.5), settle)
    if not 0 < timing.renew < ttl:
        raise AdcError("--renew-interval", f"{timing.renew} must be between 0 and the TTL {ttl}")
    if timing.lease_margin >= ttl:
        raise AdcError("--lease-margin", f"{timing.lease_margin} leaves no validity in TTL {ttl}")
    return timing


def _refuse_overlap(
    args: argparse.Namespace, figures: Assessment, timer_flag: str, hint: str = ""
) -> None:
    """Exit 2 on timers that can hold two servers UP, unless --allow-overlap or --fenced.

    Behind the fence two servers UP at the ADC cannot make two nodes serve: a node
    without the lease refuses the connection, so the figures only inform.
    """
    if not figures.safe and not args.allow_overlap and not args.fenced:
        how_long = (
            f"for up to {figures.overlap:g} s"
            if figures.overlap > 0
            else "for an instant (a tie that round trips decide)"
        )
        raise AdcError(
            timer_flag,
            f"these timers let the ADC hold two servers UP {how_long}; change the "
            f"timers{hint} (see the figures with --allow-overlap) or pass --allow-overlap",
        )


def _figures(args: argparse.Namespace, figures: Assessment) -> Assessment:
    """``figures``, with a last line that says what an overlap means behind the fence."""
    if not args.fenced:
        return figures
    note = (
        "Fenced (--fenced): two servers UP at the ADC never make two nodes serve; a node"
        " without the lease refuses, and the connection is retried on the next one."
    )
    return dataclasses.replace(figures, lines=(*figures.lines, note))


def _host_header(args: argparse.Namespace) -> str:
    value: str = args.host_header or "vipmon"
    if not set(value) <= _HOST_HEADER_CHARS:
        raise AdcError("--host-header", f"{value!r} is not a host name")
    return value


def _path(args: argparse.Namespace, dest: str, default: str) -> str:
    value: str = getattr(args, dest) or default
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise AdcError(_flag(dest), f"{value!r} must be an absolute path without spaces")
    return value


def _tls(args: argparse.Namespace, separate_key: bool) -> TlsCheck | None:
    """The TLS of the checks, or None. ``separate_key``: the ADC takes the key apart."""
    if not args.tls:
        for dest in sorted(_TLS - {"tls"}):
            if getattr(args, dest) is not None:
                raise AdcError(_flag(dest), "needs --tls")
        return None
    if args.ca_file is None:
        raise AdcError("--ca-file", "required with --tls: the checks verify vipmon's certificate")
    name = args.tls_server_name
    if name is not None and (not name or not set(name) <= _HOST_HEADER_CHARS):
        raise AdcError("--tls-server-name", f"{name!r} is not a host name")
    cert = _path(args, "client_cert", "/") if args.client_cert is not None else None
    key = _path(args, "client_key", "/") if args.client_key is not None else None
    if not separate_key and key is not None:
        raise AdcError("--client-key", f"{args.target} takes the key in the --client-cert PEM")
    if separate_key and (cert is None) != (key is None):
        raise AdcError("--client-key", "give --client-cert and --client-key together")
    return TlsCheck(_path(args, "ca_file", "/"), name, cert, key)


def command_line(args: argparse.Namespace) -> str:
    """The canonical command that reproduces this output (only options that were given)."""
    words = ["vipmon", "adc-config", args.target]
    if args.vip:
        words += ["--vip", args.vip]
    for node in args.node:
        words += ["--node", node]
    lease = ["lease_ttl", "renew_interval", "lease_margin", "settle_time"]
    for dest in ["monitor_port", *sorted(SPECIFIC), *lease]:
        value = getattr(args, dest)
        if value is True:
            words.append(_flag(dest))
        elif value is not None:
            words += [_flag(dest), f"{value:g}" if isinstance(value, float) else str(value)]
    if args.allow_overlap:
        words.append("--allow-overlap")
    return shlex.join(words)


def _profile(args: argparse.Namespace) -> str:
    return str(args.profile or "conservative")


def _haproxy_config(args: argparse.Namespace, nodes: tuple[AdcNode, ...]) -> haproxy.HaproxyConfig:
    base = HAPROXY_PROFILES[_profile(args)]
    interval = _positive(args, "interval", base.inter)
    # Conservative: fastinter and downinter follow --interval, as they always have.
    follows = _profile(args) == "conservative"
    timers = HaproxyTimers(
        inter=interval,
        fastinter=_positive(args, "fastinter", interval if follows else base.fastinter),
        downinter=_positive(args, "downinter", interval if follows else base.downinter),
        rise=_count(args, "rise", base.rise),
        fall=_count(args, "fall", base.fall),
        timeout_check=_positive(args, "timeout", base.timeout_check),
        timeout_connect=_positive(args, "connect_timeout", base.timeout_connect),
    )
    check: haproxy.CheckStyle = args.check or "status"
    if (check == "agent") != (args.agent_port is not None):
        raise AdcError("--agent-port", "give it exactly when --check agent is chosen")
    if args.agent_port is not None and not 1 <= args.agent_port <= 65535:
        raise AdcError("--agent-port", f"{args.agent_port} is not a port number (1-65535)")
    state_file = None if args.state_file == "none" else _path(args, "state_file", STATE_FILE)
    return haproxy.HaproxyConfig(
        vip=parse_endpoint(args.vip, "--vip"),
        nodes=nodes,
        timers=timers,
        check=check,
        mode=args.mode or "tcp",
        name=check_name(args.name or "vipmon", "--name"),
        host_header=_host_header(args),
        stats_socket=_path(args, "stats_socket", "/run/haproxy/vipmon.sock"),
        state_file=state_file,
        agent_port=args.agent_port,
        agent_inter=_positive(args, "agent_interval", interval),
        tls=_tls(args, separate_key=False),
        fenced=bool(args.fenced),
    )


def _build_haproxy(
    args: argparse.Namespace, nodes: tuple[AdcNode, ...], node: NodeTiming, command: str
) -> str:
    if args.target == "haproxy-state":
        for n in nodes:
            require_ip(n.app, "--node", "HAProxy reads srv_addr in a state file as an address")
        name = check_name(args.name or "vipmon", "--name")
        return haproxy.render_state(
            f"{name}_nodes", nodes, agent=args.check == "agent", command=command
        )
    config = _haproxy_config(args, nodes)
    figures = assess(config.timers, node)
    _refuse_overlap(args, figures, "--rise")
    return haproxy.render(config, _figures(args, figures), command)


def _build_f5(
    args: argparse.Namespace, nodes: tuple[AdcNode, ...], node: NodeTiming, command: str
) -> str:
    interval = _whole(args, "interval", 1, 1)
    base = f5_profile(_profile(args), interval)
    timeout = _whole(args, "timeout", base.timeout, 1)
    timers = F5Timers(interval, timeout, _whole(args, "time_until_up", timeout + interval, 0))
    vip = parse_endpoint(args.vip, "--vip")
    require_ip(vip, "--vip", "an F5 virtual server listens on an address")
    for n in nodes:
        require_ip(n.app, "--node", "the script creates F5 nodes by address")
    figures = assess(timers, node)
    _refuse_overlap(args, figures, "--time-until-up")
    config = f5.F5Config(
        vip,
        nodes,
        timers,
        check_name(args.name or "vipmon", "--name"),
        check_name(args.partition or "Common", "--partition"),
        _host_header(args),
        _tls(args, separate_key=True),
    )
    return f5.render(config, figures.lines, command)


def _build_nginx_plus(
    args: argparse.Namespace, nodes: tuple[AdcNode, ...], node: NodeTiming, command: str
) -> str:
    ports = {n.monitor_port for n in nodes}
    if len(ports) > 1:
        raise AdcError(
            "--node",
            "NGINX Plus health_check takes one port= for every server; "
            f"the nodes use {sorted(ports)}",
        )
    base = NGINX_PLUS_PROFILES[_profile(args)]
    timeout = _positive(args, "timeout", base.read_timeout)
    jitter = args.jitter if args.jitter is not None else base.jitter
    if jitter < 0:
        raise AdcError("--jitter", f"{jitter} must not be negative")
    timers = NginxPlusTimers(
        _positive(args, "interval", base.interval),
        jitter,
        _count(args, "fall", base.fails),
        _count(args, "rise", base.passes),
        timeout,
        timeout,
    )
    figures = assess(timers, node)
    _refuse_overlap(args, figures, "--rise")
    tls = _tls(args, separate_key=True)
    if tls is not None and tls.server_name is None:
        raise AdcError(
            "--tls-server-name",
            "required for nginx-plus with --tls: proxy_ssl_verify checks one name for "
            "the whole upstream (the name in the nodes' certificates)",
        )
    config = nginx.NginxConfig(
        parse_endpoint(args.vip, "--vip"),
        nodes,
        check_name(args.name or "vipmon", "--name"),
        _host_header(args),
        tls=tls,
    )
    return nginx.render_plus(config, timers, figures.lines, command)


def _build_nginx(
    args: argparse.Namespace, nodes: tuple[AdcNode, ...], node: NodeTiming, command: str
) -> str:
    tries = _count(args, "tries", len(nodes))
    if tries < len(nodes):
        raise AdcError(
            "--tries",
            f"{tries} is fewer than the {len(nodes)} nodes: a request "
            "could be turned away by every standby it tries and miss the master",
        )
    connect = _positive(args, "connect_timeout", 0.5 if args.fenced else 1.0)
    config = nginx.NginxConfig(
        parse_endpoint(args.vip, "--vip"),
        nodes,
        check_name(args.name or "vipmon", "--name"),
        connect_timeout=connect,
        tries=tries,
    )
    if args.fenced:
        figures = fenced_lines(node, connect)
        return nginx.render_fenced(config, figures, command)
    return nginx.render_passive(config, passive_lines(node, tries, connect), command)


def _health_port(nodes: tuple[AdcNode, ...]) -> int | None:
    """Caddy's one ``health_port`` for every node, or None where it is each app port."""
    ports = {n.monitor_port for n in nodes}
    if len(ports) > 1:
        raise AdcError(
            "--node",
            f"Caddy's health_port is one port for every node; the nodes use {sorted(ports)}",
        )
    port = ports.pop()
    return None if all(n.app.port == port for n in nodes) else port


def _build_caddy(
    args: argparse.Namespace, nodes: tuple[AdcNode, ...], node: NodeTiming, command: str
) -> str:
    base = CADDY_PROFILES[_profile(args)]
    timers = CaddyTimers(
        _positive(args, "interval", base.interval),
        _positive(args, "timeout", base.timeout),
        _positive(args, "connect_timeout", base.dial_timeout),
    )
    figures = assess(timers, node)
    least = timers.interval + ROUND_TRIP_ALLOWANCE
    hint = (
        f", run the nodes with --settle-time and --lease-margin of at least {least:g} s "
        "and give them here, or fence the cluster (--fenced)"
    )
    _refuse_overlap(args, figures, "--interval", hint)
    # Default: the worst crash failover, rounded up to whole seconds, so that a request
    # arriving while no node is master waits for the new one.
    try_duration = _positive(args, "try_duration", float(math.ceil(figures.failover)))
    vip = parse_endpoint(args.vip, "--vip")
    if vip.port == 443:
        raise AdcError(
            "--vip",
            "the Caddyfile serves plain HTTP, and Caddy refuses http:// on port 443; give "
            "another port (for HTTPS at Caddy, put your domain in the site address)",
        )
    config = caddy.CaddyConfig(
        vip,
        nodes,
        timers,
        try_duration,
        _positive(args, "try_interval", 0.1),
        fenced=bool(args.fenced),
        health_port=_health_port(nodes),
        host_header=_host_header(args),
    )
    return caddy.render(config, _figures(args, figures).lines, command)


def _check_fenceable(nodes: tuple[AdcNode, ...]) -> None:
    for n in nodes:
        if n.app.port == n.monitor_port:
            raise AdcError(
                "--node",
                f"{n.name}: with --fenced the application port cannot be vipmon's monitor "
                f"port {n.monitor_port} (vipmon does not fence its own port)",
            )


_BUILDERS: dict[str, Callable[[argparse.Namespace, tuple[AdcNode, ...], NodeTiming, str], str]]
_BUILDERS = {
    "haproxy": _build_haproxy,
    "haproxy-state": _build_haproxy,
    "f5": _build_f5,
    "nginx-plus": _build_nginx_plus,
    "nginx": _build_nginx,
    "caddy": _build_caddy,
}


def build(args: argparse.Namespace) -> str:
    """The config text for ``args.target``. Raises AdcError on the first bad argument."""
    _check_applies(args)
    if args.target != "haproxy-state" and not args.vip:
        raise AdcError("--vip", f"required for {args.target}")
    monitor_port = args.monitor_port if args.monitor_port is not None else 8700
    if not 1 <= monitor_port <= 65535:
        raise AdcError("--monitor-port", f"{monitor_port} is not a port number (1-65535)")
    nodes = parse_nodes(args.node, monitor_port)
    if args.fenced:
        _check_fenceable(nodes)
    return _BUILDERS[args.target](args, nodes, _node_timing(args), command_line(args))
