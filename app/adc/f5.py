"""F5 BIG-IP LTM: a shell script of ``tmsh -c`` commands for the monitor, pool and virtual.

The HTTP monitor sends a full HTTP/1.1 request (Host, ``Connection: Close``)
to each node's monitor port and matches its receive strings, as regular
expressions, against the whole response (status line, headers, body):

* ``recv "ROLE=MASTER"`` matches only the master: UP (enabled), at once;
* ``recv-disable "ROLE=DRAINING"``: UP (disabled), at once; existing
  connections go on, no new ones arrive;
* anything else matches neither: the member is DOWN once ``timeout`` passes
  with no good answer.

A status code plays no part: F5 ignores it. Members sharing a monitor port
share one monitor; each other port gets its own (``destination *:PORT``).
With ``F5Config.tls`` the monitor is ``https`` (with ``cert``/``key`` for a
client certificate). Rendering never fails; arguments are validated in :mod:`app.adc.build`.

The script can be run again: tmsh has no "create or replace", so each object is
listed first, then modified to the script's values or created. Pool members and
the virtual's profiles are replaced as a whole. A node that exists is kept, with
a line saying so, since tmsh cannot change a node's address.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.adc.model import AdcNode, Endpoint, TlsCheck
from app.adc.text import header
from app.adc.timers import F5Timers

RECV = "ROLE=MASTER"
RECV_DISABLE = "ROLE=DRAINING"


@dataclass(frozen=True)
class F5Config:
    """Everything the tmsh script needs. Hosts are IP literals (the CLI checks)."""

    vip: Endpoint
    nodes: tuple[AdcNode, ...]
    timers: F5Timers
    name: str = "vipmon"
    partition: str = "Common"
    host_header: str = "vipmon"
    tls: TlsCheck | None = None

    def path(self, name: str) -> str:
        return f"/{self.partition}/{name}"

    def monitor_name(self, port: int) -> str:
        ports = {n.monitor_port for n in self.nodes}
        return self.path(
            f"{self.name}_monitor" if len(ports) == 1 else f"{self.name}_monitor_{port}"
        )


def send_string(host_header: str) -> str:
    """The monitor's send string, in tmsh notation (``\\r\\n`` written as backslash escapes)."""
    return f"GET /monitor HTTP/1.1\\r\\nHost: {host_header}\\r\\nConnection: Close\\r\\n\\r\\n"


def _dest(endpoint: Endpoint) -> str:
    """F5 writes IPv4 as addr:port and IPv6 as addr.port."""
    sep = "." if endpoint.is_ipv6 else ":"
    return f"{endpoint.host}{sep}{endpoint.port}"


def _member(config: F5Config, node: AdcNode, per_member_monitor: bool) -> str:
    sep = "." if node.app.is_ipv6 else ":"
    body = f" {{ monitor {config.monitor_name(node.monitor_port)} }}" if per_member_monitor else ""
    return f"{config.path(node.name)}{sep}{node.app.port}{body}"


_NOTES = [
    "Run on the BIG-IP's bash shell (or type each quoted command at the tmsh prompt).",
    "It can be run again, e.g. with new timers: each object is created if it is missing",
    "and otherwise modified to these values (pool members and profiles replaced). A node",
    "that exists is kept, since tmsh cannot change a node's address; the script says so.",
    "Monitor: a full HTTP/1.1 GET /monitor with Host and 'Connection: Close' (F5's default",
    "'GET /' has no Host header). F5 matches recv and recv-disable as regular expressions",
    "over the whole response and ignores the status code:",
    "  master    'ROLE=MASTER'   matches recv          -> up (enabled), at once",
    "  draining  'ROLE=DRAINING' matches recv-disable  -> up (disabled): its connections go",
    "                                                     on, no new ones arrive, at once",
    "  standby, unknown, maintenance: match neither    -> down when timeout passes without",
    "                                                     a matching answer",
    "interval: seconds between probes. timeout: a member with no matching answer for that",
    "long is down; keep it > 2 x interval so that one lost probe is not an outage (F5's",
    "usual 3 x interval + 1 is the conservative profile; --profile fast uses 2 x interval + 1).",
    "time-until-up: a member must answer well that long before it is up again. It must",
    "exceed timeout, or a new master can be up while the old one still is (F5's defaults,",
    "interval 5 timeout 16 time-until-up 0, allow up to 16 s of two members up).",
    "Action on Service Down (service-down-action reset): when the old master goes down,",
    "F5 resets its open connections so that clients reconnect to the new master.",
]


def _tls_notes(config: F5Config) -> list[str]:
    tls = config.tls
    if tls is None:
        return []
    notes = [
        "",
        "TLS: an https monitor speaks HTTPS to the monitor port. It does NOT verify the",
        "node's certificate by itself: to have it checked against the CA, give the monitor",
        "a server-SSL profile that requires one (where the BIG-IP version offers it), e.g.",
        f"  create ltm profile server-ssl {config.path(config.name + '_monitor_ssl')} "
        f"defaults-from /Common/serverssl ca-file {tls.ca_file} peer-cert-mode require"
        + (f" authenticate-name {tls.server_name}" if tls.server_name else ""),
        f"  modify ltm monitor https <monitor> ssl-profile "
        f"{config.path(config.name + '_monitor_ssl')}",
    ]
    if tls.client_cert:
        notes += [
            "cert/key: the client certificate the monitor presents to nodes run with",
            "--tls-client-ca-file (BIG-IP certificate and key objects, imported first).",
        ]
    return notes


def _client_cert(tls: TlsCheck | None) -> str:
    if tls is None or tls.client_cert is None:
        return ""
    return f"cert {tls.client_cert} key {tls.client_key} "


def _create_or_modify(kind_name: str, create: str, modify: str) -> list[str]:
    """tmsh has no "create or replace": list the object, then modify it or create it."""
    return [
        f"if tmsh -c 'list {kind_name}' >/dev/null 2>&1; then",
        f"    tmsh -c 'modify {kind_name} {modify}'",
        "else",
        f"    tmsh -c 'create {kind_name} {create}'",
        "fi",
    ]


def _node(config: F5Config, node: AdcNode) -> list[str]:
    kind_name = f"ltm node {config.path(node.name)}"
    return [
        f"if tmsh -c 'list {kind_name}' >/dev/null 2>&1; then",
        f'    echo "{kind_name} exists: kept (tmsh cannot change the address of a node;'
        f' delete it first if {node.app.host} is not its address)"',
        "else",
        f"    tmsh -c 'create {kind_name} address {node.app.host}'",
        "fi",
    ]


def render(config: F5Config, figures: tuple[str, ...], command: str) -> str:
    """The script text: comments, then each object created or brought up to date, then save."""
    t = config.timers
    ports = sorted({n.monitor_port for n in config.nodes})
    per_member = len(ports) > 1
    lines = ["#!/bin/sh"]
    lines += header(
        f"vipmon: F5 BIG-IP LTM objects for the VIP {config.vip}.",
        command,
        [*_NOTES, *_tls_notes(config)],
        figures,
    )
    lines += ["", "set -e"]
    kind = "https" if config.tls else "http"
    for port in ports:
        settings = (
            f"interval {t.interval} timeout {t.timeout} time-until-up {t.time_until_up} "
            f"destination *:{port} {_client_cert(config.tls)}"
            f'send "{send_string(config.host_header)}" recv "{RECV}" '
            f'recv-disable "{RECV_DISABLE}"'
        )
        lines += _create_or_modify(
            f"ltm monitor {kind} {config.monitor_name(port)}",
            f"defaults-from /Common/{kind} {settings}",
            settings,
        )
    for n in config.nodes:
        lines += _node(config, n)
    members = " ".join(_member(config, n, per_member) for n in config.nodes)
    pool = config.path(config.name + "_pool")
    pool_settings = (
        "" if per_member else f"monitor {config.monitor_name(ports[0])} "
    ) + "service-down-action reset members"
    lines += _create_or_modify(
        f"ltm pool {pool}",
        f"{pool_settings} add {{ {members} }}",
        f"{pool_settings} replace-all-with {{ {members} }}",
    )
    mask = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" if config.vip.is_ipv6 else "255.255.255.255"
    virtual = (
        f"destination {config.path(_dest(config.vip))} mask {mask} ip-protocol tcp "
        f"pool {pool} profiles"
    )
    automap = "source-address-translation { type automap }"
    lines += _create_or_modify(
        f"ltm virtual {config.path(config.name + '_vs')}",
        f"{virtual} add {{ /Common/tcp }} {automap}",
        f"{virtual} replace-all-with {{ /Common/tcp }} {automap}",
    )
    lines.append("tmsh -c 'save sys config'")
    return "\n".join(lines) + "\n"
