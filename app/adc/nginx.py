"""nginx configs (an ``http {}`` snippet, e.g. ``conf.d/vipmon.conf``) for the VIP.

* :func:`render_plus`: NGINX Plus active checks, ``health_check`` with a
  ``match`` on the ``ROLE=MASTER`` token, in a location of its own so that
  its short timeouts and Host header do not touch client traffic.
* :func:`render_passive`: open-source nginx has no active checks. Each
  request goes to the nodes in turn until one answers something other than
  503; ``max_fails=0`` keeps nginx from marking any node down. This only works
  if every non-master node's *application* answers 503.
* :func:`render_fenced`: open-source nginx in front of a fenced cluster (``vipmon
  run --fence-port``): round-robin over every node; a node without the master
  lease refuses the connection, and ``proxy_next_upstream error timeout`` tries
  the next one. The application needs no cooperation.

With ``NginxConfig.tls`` the NGINX Plus check location proxies over HTTPS
and verifies the certificate (``proxy_ssl_verify``) against the CA for the
name given; client traffic is not touched. The passive pattern never talks to
vipmon, so TLS does not apply to it.

Rendering never fails; arguments are validated in :mod:`app.adc.build`.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.adc.model import AdcNode, Endpoint, TlsCheck
from app.adc.text import duration, header
from app.adc.timers import NginxPlusTimers

HEALTH_LOCATION = "/.vipmon-health-check"


@dataclass(frozen=True)
class NginxConfig:
    """Everything one nginx snippet needs. ``tries`` is for the passive pattern."""

    vip: Endpoint
    nodes: tuple[AdcNode, ...]
    name: str = "vipmon"
    host_header: str = "vipmon"
    connect_timeout: float = 1.0
    tries: int = 0
    tls: TlsCheck | None = None

    @property
    def upstream(self) -> str:
        return f"{self.name}_nodes"


def _server_block(config: NginxConfig, directives: list[str], extra: list[str]) -> list[str]:
    return [
        "server {",
        f"    listen {config.vip};",
        "",
        "    location / {",
        f"        proxy_pass http://{config.upstream};",
        *directives,
        "    }",
        *extra,
        "}",
    ]


def _tls_directives(tls: TlsCheck | None) -> list[str]:
    if tls is None:
        return []
    lines = [
        f"proxy_ssl_trusted_certificate {tls.ca_file};",
        "proxy_ssl_verify on;",
        "proxy_ssl_protocols TLSv1.2 TLSv1.3;",
        f"proxy_ssl_name {tls.server_name};",
        "proxy_ssl_server_name on;",
    ]
    if tls.client_cert:
        lines += [
            f"proxy_ssl_certificate {tls.client_cert};",
            f"proxy_ssl_certificate_key {tls.client_key};",
        ]
    return [f"        {line}" for line in lines]


def _tls_notes(tls: TlsCheck | None) -> list[str]:
    if tls is None:
        return []
    notes = [
        "TLS: the check location proxies to the monitor port over HTTPS and verifies the",
        "certificate against proxy_ssl_trusted_certificate for proxy_ssl_name (sent as",
        "SNI too). Client traffic in location / is not touched.",
    ]
    if tls.client_cert:
        notes.append("proxy_ssl_certificate: for nodes run with --tls-client-ca-file.")
    return notes


_PLUS_NOTES = (
    "Active checks: GET /monitor on the monitor port; the match needs status 200 and",
    "the body token ROLE=MASTER, which only the master sends. 'mandatory' keeps a",
    "server out of traffic until its first check passed, also at start-up and for",
    "servers added later; 'persistent' keeps the state over a reload. The check runs",
    f"from the internal location {HEALTH_LOCATION}, which sets its Host header and",
    "its timeouts (NGINX Plus takes a check's timeouts from proxy_connect_timeout and",
    "proxy_read_timeout of the location that holds health_check).",
    "Not checked by open-source nginx: health_check and match are NGINX Plus only.",
)


def _check_location(config: NginxConfig, timers: NginxPlusTimers) -> list[str]:
    """The internal location that holds ``health_check``, with its Host and timeouts."""
    check = " ".join(
        [
            "health_check uri=/monitor",
            f"port={config.nodes[0].monitor_port}",
            f"interval={duration(timers.interval)}",
            f"jitter={duration(timers.jitter)}",
            f"fails={timers.fails}",
            f"passes={timers.passes}",
            f"match={config.name}_master",
            "mandatory persistent;",
        ]
    )
    return [
        "",
        f"    location = {HEALTH_LOCATION} {{",
        "        internal;",
        f"        proxy_pass {'https' if config.tls else 'http'}://{config.upstream};",
        *_tls_directives(config.tls),
        f"        proxy_set_header Host {config.host_header};",
        f"        proxy_connect_timeout {duration(timers.connect_timeout)};",
        f"        proxy_read_timeout {duration(timers.read_timeout)};",
        f"        {check}",
        "    }",
    ]


def render_plus(
    config: NginxConfig, timers: NginxPlusTimers, figures: tuple[str, ...], command: str
) -> str:
    """The NGINX Plus snippet. Every node must share one monitor port (``port=``)."""
    lines = header(
        f"vipmon: NGINX Plus snippet (http context) for the VIP {config.vip}.",
        command,
        [*_PLUS_NOTES, *_tls_notes(config.tls)],
        figures,
    )
    lines += [
        "",
        f"match {config.name}_master {{",
        "    status 200;",
        '    body ~ "ROLE=MASTER";',
        "}",
        "",
        f"upstream {config.upstream} {{",
        f"    zone {config.upstream} 64k;",
        *[f"    server {n.app};" for n in config.nodes],
        "}",
        "",
        *_server_block(config, [], _check_location(config, timers)),
    ]
    return "\n".join(lines) + "\n"


def _retrying(config: NginxConfig, server: str, also: str) -> list[str]:
    """The upstream of every node and the location that retries on the next one.

    ``server``: the parameters of each ``server`` line; ``also``: the conditions
    ``proxy_next_upstream`` adds to ``error timeout``. Ends with an empty string, so
    that joining the lines ends the text with a newline.
    """
    next_upstream = " ".join(["error timeout", also]).strip()
    return [
        "",
        f"upstream {config.upstream} {{",
        *[f"    server {n.app} {server};" for n in config.nodes],
        "}",
        "",
        *_server_block(
            config,
            [
                f"        proxy_next_upstream {next_upstream};",
                f"        proxy_next_upstream_tries {config.tries};",
                f"        proxy_connect_timeout {duration(config.connect_timeout)};",
            ],
            [],
        ),
        "",
    ]


def render_passive(config: NginxConfig, figures: tuple[str, ...], command: str) -> str:
    """The open-source nginx snippet: passive retries on 503, no health state."""
    notes = [
        "Passive pattern for open-source nginx, which has no active checks.",
        "Each request goes to the next node; an error, a timeout or a 503 sends it on to",
        f"the next one, up to proxy_next_upstream_tries = {config.tries} (one per node), so",
        "it reaches the master whenever there is one. max_fails=0: nginx never marks a",
        "node down, so it needs no recovery time either.",
        "Limits:",
        "  - every non-master node's APPLICATION must answer 503 (vipmon's /monitor port is",
        "    not used here); an application that serves on standbys defeats the pattern;",
        "  - non_idempotent retries a POST after a 503 or a timeout: safe after a 503 (the",
        "    standby refused it), NOT after a timeout, when the first node may have acted;",
        "  - no drain: a draining master's 503 sends new requests elsewhere at once;",
        "  - each request a standby turns away costs one more round trip, and a vanished",
        "    host costs proxy_connect_timeout per request that tries it first;",
        "  - while no node is master, clients get the last node's 503.",
    ]
    lines = header(
        f"vipmon: open-source nginx snippet (http context) for the VIP {config.vip}.",
        command,
        notes,
        figures,
    )
    return "\n".join([*lines, *_retrying(config, "max_fails=0", "http_503 non_idempotent")])


def _fenced_notes(config: NginxConfig) -> list[str]:
    return [
        "Fenced cluster (vipmon run --fence-port on every node): a node without the master",
        "lease refuses new connections to the application port with a TCP reset. nginx",
        "sends each request round-robin to every node and, on a refused connection, to",
        f"the next, up to proxy_next_upstream_tries = {config.tries} (one per node), so it",
        "reaches the master whenever there is one. The application needs no cooperation",
        "and vipmon's monitor port is not used.",
        "proxy_next_upstream error timeout: a refused or reset connection, or no answer in",
        "proxy_connect_timeout, sends the request on. Not http_502: nginx's own 502 for a",
        "refused node is already an 'error', and a 502 from the application is its answer.",
        "Not non_idempotent: a POST whose connection was refused never left nginx and is",
        "retried anyway; one the old master reset mid-request (--fence-established reset)",
        "may have acted, so it fails to the client instead of running twice.",
        "max_fails=0: nginx never passes a node over, so a new master gets its share of",
        "requests from the moment its kernel lets them in: the failover at the VIP is the",
        "lease's own time, with no probe lag. A standby's refusal costs one round trip",
        "(a TCP reset). The price: a host that vanished (powered off, link down) costs",
        "proxy_connect_timeout on every request that tries it first, about one in",
        "nodes, until it is back; lower --connect-timeout on a fast network.",
        "proxy_connect_timeout: a refused connection fails at once; the timeout only",
        "bounds a node that does not answer at all.",
        "Limits: while no node holds the lease, clients get nginx's 502 at once (nothing",
        "holds requests across the gap); keep upstream keepalive off, or a kept",
        "connection to the old master lives until the fence resets it.",
    ]


def render_fenced(config: NginxConfig, figures: tuple[str, ...], command: str) -> str:
    """The open-source nginx snippet for a fenced cluster: round-robin, retry on refusal."""
    lines = header(
        f"vipmon: open-source nginx snippet (http context) for the VIP {config.vip}, fenced.",
        command,
        _fenced_notes(config),
        figures,
    )
    return "\n".join([*lines, *_retrying(config, "max_fails=0", "")])
