"""nginx configs (an ``http {}`` snippet, e.g. ``conf.d/vipmon.conf``) for the VIP.

* :func:`render_plus`: NGINX Plus active checks, ``health_check`` with a
  ``match`` on the ``ROLE=MASTER`` token, in a location of its own so that
  its short timeouts and Host header do not touch client traffic.
* :func:`render_passive`: open-source nginx has no active checks. Each
  request goes to the nodes in turn until one answers something other than
  503; ``max_fails=0`` keeps nginx from marking any node down. This only works
  if every non-master node's *application* answers 503.

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
    lines += [
        "",
        f"upstream {config.upstream} {{",
        *[f"    server {n.app} max_fails=0;" for n in config.nodes],
        "}",
        "",
        *_server_block(
            config,
            [
                "        proxy_next_upstream error timeout http_503 non_idempotent;",
                f"        proxy_next_upstream_tries {config.tries};",
                f"        proxy_connect_timeout {duration(config.connect_timeout)};",
            ],
            [],
        ),
    ]
    return "\n".join(lines) + "\n"
