"""The text of a host's files: etcd's config, ``vipmon.toml``, the units, ``install.sh``.

Rendering never fails and touches no disk. Every path inside these files is the
final installed one (:mod:`app.bootstrap.plan`); :func:`placements` says where
each bundle file goes, with its mode and owner, and ``install.sh`` is made from
that same list, so the two cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from app.bootstrap.plan import (
    API_PORT,
    CLIENT_PORT,
    CONFIG_DIR,
    ETCD_BIN,
    ETCD_CONFIG_DIR,
    ETCD_DATA_DIR,
    ETCD_USER,
    PEER_PORT,
    VIPMON_BIN,
    Host,
    Plan,
)

VIPMON_UNIT = "vipmon.service"
ETCD_UNIT = "vipmon-etcd.service"
ETCD_CONFIG = "etcd.conf.yml"
VIPMON_CONFIG = "vipmon.toml"
UNIT_DIR = "/etc/systemd/system"
ETCD_CA = "etcd-ca.crt"  # only with external etcd whose CA is not ours


@dataclass(frozen=True)
class Placement:
    """Bundle file ``name`` is installed at ``path`` with ``mode``, owned by ``owner``."""

    name: str
    path: str
    mode: int
    owner: str = "root"


def placements(host: Host, *, etcd_ca: bool = False) -> list[Placement]:
    """Every file of ``host``'s bundle but install.sh; ``etcd_ca``: external etcd's own CA."""
    out = [Placement("ca.crt", f"{CONFIG_DIR}/ca.crt", 0o644)]
    if host.member:
        out += [
            Placement(ETCD_CONFIG, f"{ETCD_CONFIG_DIR}/{ETCD_CONFIG}", 0o644),
            Placement("member.crt", f"{ETCD_CONFIG_DIR}/member.crt", 0o644),
            Placement("member.key", f"{ETCD_CONFIG_DIR}/member.key", 0o600, "vipmon-etcd"),
            Placement(ETCD_UNIT, f"{UNIT_DIR}/{ETCD_UNIT}", 0o644),
        ]
    if host.node:
        out += [
            Placement(VIPMON_CONFIG, f"{CONFIG_DIR}/{VIPMON_CONFIG}", 0o600, "vipmon"),
            Placement("api.crt", f"{CONFIG_DIR}/api.crt", 0o644),
            Placement("api.key", f"{CONFIG_DIR}/api.key", 0o600, "vipmon"),
            Placement("etcd-client.crt", f"{CONFIG_DIR}/etcd-client.crt", 0o644),
            Placement("etcd-client.key", f"{CONFIG_DIR}/etcd-client.key", 0o600, "vipmon"),
            Placement("admin.token", f"{CONFIG_DIR}/admin.token", 0o600, "vipmon"),
            Placement(VIPMON_UNIT, f"{UNIT_DIR}/{VIPMON_UNIT}", 0o644),
        ]
        if etcd_ca:
            out.append(Placement(ETCD_CA, f"{CONFIG_DIR}/{ETCD_CA}", 0o644))
    return out


def etcd_config(plan: Plan, host: Host, state: str = "new") -> str:
    """etcd's config file (``etcd --config-file``) for ``host``'s member.

    ``state`` is ``new`` for the members made together, ``existing`` for one
    that joins a running cluster after ``etcdctl member add``.
    """
    tls = {
        "cert-file": f"{ETCD_CONFIG_DIR}/member.crt",
        "key-file": f"{ETCD_CONFIG_DIR}/member.key",
        "trusted-ca-file": f"{CONFIG_DIR}/ca.crt",
        "client-cert-auth": True,
    }
    config = {
        "name": host.name,
        "data-dir": ETCD_DATA_DIR,
        "listen-client-urls": f"https://{host.url_host}:{CLIENT_PORT}",
        "advertise-client-urls": host.client_url,
        "listen-peer-urls": f"https://{host.url_host}:{PEER_PORT}",
        "initial-advertise-peer-urls": host.peer_url,
        "initial-cluster": plan.initial_cluster,
        "initial-cluster-state": state,
        "initial-cluster-token": f"vipmon-{plan.cluster}",
        "client-transport-security": dict(tls),
        "peer-transport-security": dict(tls),
        # vipmon speaks to etcd's JSON gateway; a config file leaves it off unless asked.
        "enable-grpc-gateway": True,
        "logger": "zap",
        "log-outputs": ["stderr"],
    }
    head = (
        f"# etcd member {host.name} of vipmon cluster {plan.cluster}, by `vipmon bootstrap`.\n"
        f"# Installed as {ETCD_CONFIG_DIR}/{ETCD_CONFIG}; run as etcd --config-file <it>.\n"
    )
    return head + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _toml(value: object) -> str:
    # A JSON string or list of strings is a valid TOML basic string or array.
    return json.dumps(value)


def vipmon_config(plan: Plan, host: Host, password: str, *, etcd_ca: bool = False) -> str:
    """``vipmon.toml`` for ``host``: etcd over TLS with the ``vipmon`` user, and TLS on the API."""
    ca = f"{CONFIG_DIR}/{ETCD_CA}" if etcd_ca else f"{CONFIG_DIR}/ca.crt"
    settings: list[tuple[str, object]] = [
        ("node_id", host.name),
        ("cluster", plan.cluster),
        ("host", "0.0.0.0"),
        ("port", API_PORT),
        ("advertise_url", host.api_url),
        ("backend", "etcd"),
        ("etcd_endpoints", list(plan.endpoints)),
        ("etcd_ca_file", ca),
        ("etcd_cert_file", f"{CONFIG_DIR}/etcd-client.crt"),
        ("etcd_key_file", f"{CONFIG_DIR}/etcd-client.key"),
        ("etcd_username", ETCD_USER),
        ("etcd_password", password),
        ("tls_cert_file", f"{CONFIG_DIR}/api.crt"),
        ("tls_key_file", f"{CONFIG_DIR}/api.key"),
        ("admin_token_file", f"{CONFIG_DIR}/admin.token"),
    ]
    lines = [
        f"# vipmon node {host.name} of cluster {plan.cluster}, by `vipmon bootstrap`.",
        f"# Installed as {CONFIG_DIR}/{VIPMON_CONFIG}, mode 0600: it holds the etcd password.",
        *(f"{key} = {_toml(value)}" for key, value in settings),
    ]
    return "\n".join(lines) + "\n"


_HARDENING = """\
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native
UMask=0077
"""


def vipmon_unit(vipmon_bin: str = VIPMON_BIN) -> str:
    """deploy/systemd/vipmon.service with ``--config`` and the fixed user ``vipmon``.

    A fixed user, not ``DynamicUser=yes``: the keys and ``vipmon.toml`` are
    written at install time with mode 0600, owned by ``vipmon``, which a dynamic
    user (a new uid each start) could not read. ``LoadCredential=`` would also
    work, but moves the files to ``/run/credentials/<unit>/``, which exists only
    under systemd: with a fixed user the same paths serve with or without it.
    """
    return f"""\
# vipmon, from a `vipmon bootstrap` bundle: deploy/systemd/vipmon.service with the
# settings in {CONFIG_DIR}/{VIPMON_CONFIG} and a fixed system user that owns its keys.
[Unit]
Description=vipmon: tells the load balancer which node is master
After=network-online.target {ETCD_UNIT}
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={vipmon_bin} run --config {CONFIG_DIR}/{VIPMON_CONFIG}
ExecReload=/bin/kill -HUP $MAINPID
User=vipmon
Group=vipmon
StateDirectory=vipmon
StateDirectoryMode=0750
Environment=VIPMON_STATE_DIR=/var/lib/vipmon
WatchdogSec=10s
Restart=on-failure
RestartSec=1s
TimeoutStartSec=30s
KillMode=mixed
TimeoutStopSec=45s
{_HARDENING}
[Install]
WantedBy=multi-user.target
"""


def etcd_unit(etcd_bin: str = ETCD_BIN) -> str:
    """The etcd member's unit: Debian's etcd binary, our config file, user ``vipmon-etcd``.

    ``TimeoutStartSec=0``: a new member reports ready only once the cluster has
    a quorum, which waits for the other hosts' members.
    """
    return f"""\
# etcd member for vipmon, from a `vipmon bootstrap` bundle (Debian: apt-get install etcd-server).
[Unit]
Description=etcd member for vipmon
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart={etcd_bin} --config-file {ETCD_CONFIG_DIR}/{ETCD_CONFIG}
User=vipmon-etcd
Group=vipmon-etcd
StateDirectory=vipmon-etcd
StateDirectoryMode=0700
Restart=on-failure
RestartSec=5s
TimeoutStartSec=0
LimitNOFILE=65536
{_HARDENING}
[Install]
WantedBy=multi-user.target
"""
