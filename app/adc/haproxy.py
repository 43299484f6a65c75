"""HAProxy 2.2+ configs that send the VIP to the one node whose ``/monitor`` is positive.

Three check styles (``HaproxyConfig.check``):

* ``status``: ``http-check expect status 200``; only the master is UP.
* ``drain``: a ``ROLE=DRAINING`` answer passes conditionally (``L7OKC``), so a
  draining master goes NOLB: it keeps its sessions and gets no new ones.
* ``agent``: the same HTTP check gates UP/DOWN; an agent-check on
  ``agent_port`` adds ``drain``/``maint`` and a readable reason.

:func:`render_state` writes the server-state seed that makes HAProxy 2.6
start every server DOWN (by default 2.6 starts them UP until the first check).
With ``HaproxyConfig.tls`` the HTTP check runs over TLS (``check-ssl``) and
requires a certificate signed by the CA file (``verify required``); the
agent-check stays plain TCP, as vipmon's agent port is.

Rendering never fails; arguments are validated in :mod:`app.adc.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.adc.model import AdcNode, Endpoint, TlsCheck
from app.adc.text import duration, header
from app.adc.timers import Assessment, HaproxyTimers

CheckStyle = Literal["status", "drain", "agent"]
STATE_COLUMNS = (
    "be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord"
)
_CHECK_CONFIGURED_ENABLED = 6


@dataclass(frozen=True)
class HaproxyConfig:
    """Everything one HAProxy config needs."""

    vip: Endpoint
    nodes: tuple[AdcNode, ...]
    timers: HaproxyTimers
    check: CheckStyle = "status"
    mode: Literal["tcp", "http"] = "tcp"
    name: str = "vipmon"
    host_header: str = "vipmon"
    stats_socket: str = "/run/haproxy/vipmon.sock"
    state_file: str | None = "/var/lib/haproxy/vipmon-servers.state"
    agent_port: int | None = None
    agent_inter: float = 1.0
    tls: TlsCheck | None = None
    fenced: bool = False

    @property
    def backend(self) -> str:
        return f"{self.name}_nodes"

    @property
    def frontend(self) -> str:
        return f"{self.name}_vip"


_STYLE_NOTES = {
    "status": [
        "Check: GET /monitor on each node's monitor port; only a 200 passes, and only the",
        "master answers 200 (ROLE=MASTER). Every other role answers 503 and is DOWN.",
    ],
    "drain": [
        "Check: GET /monitor; ROLE=MASTER passes, ROLE=DRAINING passes conditionally (L7OKC),",
        "so a draining master goes NOLB: its sessions go on, no new ones arrive. Every other",
        "role is DOWN. The tokens are matched with ROLE= so a node name cannot match them.",
    ],
    "agent": [
        "Check: GET /monitor gates UP/DOWN as in the drain style (rise/fall apply). The",
        "agent-check reads one line from vipmon's agent port (`vipmon run --agent-port N`):",
        "'up ready' on the master, 'down ready #<monitor line>' otherwise, 'drain' while",
        "draining, 'maint' in maintenance. An agent 'up' never skips rise: the HTTP check",
        "must pass too. The agent owns drain/maint: its next 'ready' clears a drain or",
        "maint set on the runtime API. Caveat (HAProxy 2.6): leaving maint resets the",
        "check health to rise, so a node that goes from maintenance straight to master",
        "is UP at once; let a node sit as standby for one inter before it may lead.",
    ],
}


def _tls_notes(config: HaproxyConfig) -> list[str]:
    tls = config.tls
    if tls is None:
        return []
    notes = [
        "",
        "TLS: the check speaks HTTPS to the monitor port (check-ssl; the VIP traffic is",
        "not touched) and needs a certificate signed by ca-file (verify required).",
    ]
    if tls.server_name:
        notes.append("check-sni sends the name and verifyhost requires it in the certificate.")
    else:
        notes.append("The certificate's name is not checked; --tls-server-name adds that.")
    if tls.client_cert:
        notes += [
            "crt is the client certificate for nodes run with --tls-client-ca-file: one PEM",
            "holding the certificate and its key.",
        ]
    if config.check == "agent":
        notes.append("The agent-check stays plain TCP: vipmon's agent port has no TLS.")
    return notes


def _tls_words(tls: TlsCheck | None) -> list[str]:
    if tls is None:
        return []
    words = ["check-ssl", "verify required", f"ca-file {tls.ca_file}"]
    if tls.server_name:
        words += [f"check-sni {tls.server_name}", f"verifyhost {tls.server_name}"]
    if tls.client_cert:
        words.append(f"crt {tls.client_cert}")
    return words


def _timer_notes(config: HaproxyConfig, state_command: str) -> list[str]:
    t = config.timers
    notes = [
        f"Timers: the old master is DOWN after fall = {t.fall} failed check(s), a new one UP",
        f"after rise = {t.rise} passes; the arithmetic below says whether that can ever hold",
        "two servers UP. on-marked-down shutdown-sessions cuts the sessions of a server",
        "that goes DOWN, so clients reconnect through the VIP to the new master.",
        "",
        "Hand-overs: while no server is UP HAProxy refuses new requests at once (tcp: the",
        "connection closes; http: 503); nothing holds them across that gap. A request the",
        "old master fails can still reach a server already UP: `option redispatch 1` with",
        "`retries 3` tries a failed connect on another server (both modes), and in",
        "--mode http `retry-on conn-failure empty-response response-timeout` resends a",
        "request already sent. L7 retries replay only requests that fit in a buffer; keep",
        "them to requests the application marks safe to repeat, e.g.",
        "`http-request disable-l7-retry if METH_POST !{ req.hdr(Idempotency-Key) -m found }`.",
    ]
    if config.state_file:
        notes += [
            "",
            "Start-up: HAProxy 2.6 starts every server UP until its first check (3.1+ has",
            "init-state). Seed the server-state file so every server starts DOWN:",
            f"  {state_command} > {config.state_file}",
            "and save the live state before each reload:",
            f"  echo 'show servers state' | socat stdio {config.stats_socket} "
            f"> {config.state_file}",
        ]
    return notes


def _fenced_notes(config: HaproxyConfig) -> list[str]:
    if not config.fenced:
        return []
    return [
        "",
        "Fenced cluster (vipmon run --fence-port on every node): a node without the master",
        "lease refuses new connections to the application port with a TCP reset and, with",
        "--fence-established reset, resets the established ones; two nodes never serve at",
        "once, whatever HAProxy shows. The /monitor checks stay: they keep traffic on the",
        "master without a refused connection per request. While HAProxy still shows the",
        "old master UP, a connection it refuses is tried again (`retries`), each retry on",
        "another UP server (`option redispatch 1`); with no other server UP the retries",
        "wait min(timeout connect, 1s) between them and the client gets the error once",
        f"they are spent. retries {_fenced_retries(config)}: one per node.",
    ]


def _fenced_retries(config: HaproxyConfig) -> int:
    return len(config.nodes)


def _check_lines(config: HaproxyConfig) -> list[str]:
    lines = [
        "    option httpchk",
        f"    http-check send meth GET uri /monitor ver HTTP/1.1 hdr Host {config.host_header}",
    ]
    if config.check == "status":
        lines.append("    http-check expect status 200")
    else:
        lines.append("    http-check expect rstring ROLE=(MASTER|DRAINING)")
    if config.check == "drain":
        lines.append("    http-check expect ! string ROLE=DRAINING error-status L7OKC")
    return lines


def _retry_lines(config: HaproxyConfig) -> list[str]:
    if not config.fenced:
        return []
    return ["    option redispatch 1", f"    retries {_fenced_retries(config)}"]


def _default_server(config: HaproxyConfig) -> str:
    t = config.timers
    words = [
        "check",
        *_tls_words(config.tls),
        f"inter {duration(t.inter)}",
        f"fastinter {duration(t.fastinter)}",
        f"downinter {duration(t.downinter)}",
        f"rise {t.rise}",
        f"fall {t.fall}",
        "on-marked-down shutdown-sessions",
    ]
    if config.check == "agent":
        words += [
            "agent-check",
            f"agent-port {config.agent_port}",
            f"agent-inter {duration(config.agent_inter)}",
        ]
    return "    default-server " + " ".join(words)


def state_command(command: str) -> str:
    """The ``haproxy-state`` twin of an ``adc-config haproxy`` command line."""
    return command.replace("adc-config haproxy ", "adc-config haproxy-state ", 1)


def render(config: HaproxyConfig, figures: Assessment, command: str) -> str:
    """The full haproxy.cfg text, figures included as comments."""
    t = config.timers
    lines = header(
        f"vipmon: HAProxy 2.2+ config for the VIP {config.vip} ({config.check} check style"
        f"{', fenced' if config.fenced else ''}).",
        command,
        [
            *_STYLE_NOTES[config.check],
            *_tls_notes(config),
            *_fenced_notes(config),
            "",
            *_timer_notes(config, state_command(command)),
        ],
        figures.lines,
    )
    lines += ["", "global", f"    stats socket {config.stats_socket} mode 660 level admin"]
    if config.state_file:
        lines.append(f"    server-state-file {config.state_file}")
    lines += [
        "",
        "defaults",
        f"    mode {config.mode}",
        f"    timeout connect {duration(t.timeout_connect)}",
        "    timeout client 1m",
        "    timeout server 1m",
        f"    timeout check {duration(t.timeout_check)}",
    ]
    if config.state_file:
        lines.append("    load-server-state-from-file global")
    lines += [
        "",
        f"frontend {config.frontend}",
        f"    bind {config.vip}",
        f"    default_backend {config.backend}",
        "",
        f"backend {config.backend}",
        *_check_lines(config),
        *_retry_lines(config),
        _default_server(config),
    ]
    lines += [f"    server {n.name} {n.app} port {n.monitor_port}" for n in config.nodes]
    return "\n".join(lines) + "\n"


def render_state(backend: str, nodes: tuple[AdcNode, ...], *, agent: bool, command: str) -> str:
    """A server-state file in which every server of ``backend`` is DOWN with zero health.

    HAProxy matches the lines by backend and server name. Addresses must be IP
    literals (HAProxy reads ``srv_addr`` as one); the caller checks that.
    ``agent`` marks the agent-check as configured and enabled, as the config has it.
    """
    agent_state = _CHECK_CONFIGURED_ENABLED if agent else 0
    rows = [
        f"0 {backend} 0 {n.name} {n.app.host} 0 0 1 1 0 1 0 0 "
        f"{_CHECK_CONFIGURED_ENABLED} {agent_state} 0 0 - {n.app.port} -"
        for n in nodes
    ]
    return "\n".join(["1", f"# {STATE_COLUMNS}", f"# Generated by: {command}", *rows]) + "\n"
