"""The topology of a bootstrapped cluster: hosts, etcd members, endpoints; and its checks.

:func:`make_plan` turns the command line's ``--host``, ``--witness`` and
``--etcd-endpoint`` values into a :class:`Plan`, or raises
:class:`BootstrapError` naming the flag at fault and why. A plan is kept as
JSON in the admin directory (:meth:`Plan.to_json`), so that ``add-host`` and
``auth`` work from what was generated, not from flags typed again.

Every path a host's files refer to is fixed here: the final installed path
(``/etc/vipmon/...``, ``/var/lib/vipmon-etcd``), the same on every host.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, replace
from typing import Any

from app.errors import ArgumentError
from app.settings import base_url, check_name

CLIENT_PORT = 2379
PEER_PORT = 2380
API_PORT = 8700
ETCD_USER = "vipmon"  # the etcd user vipmon logs in as
ETCD_DATA_DIR = "/var/lib/vipmon-etcd"
CONFIG_DIR = "/etc/vipmon"
ETCD_CONFIG_DIR = "/etc/vipmon/etcd"
VIPMON_BIN = "/opt/vipmon/bin/vipmon"
ETCD_BIN = "/usr/bin/etcd"
MEMBER_COUNTS = (1, 3, 5)


class BootstrapError(ArgumentError):
    """A flag of ``vipmon bootstrap`` is invalid: the CLI prints one line and exits 2."""


@dataclass(frozen=True)
class Host:
    """One host. ``member``: it runs an etcd member; ``node``: it runs vipmon (not a witness)."""

    name: str
    address: str
    member: bool
    node: bool = True

    @property
    def url_host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address

    @property
    def client_url(self) -> str:
        return f"https://{self.url_host}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.url_host}:{PEER_PORT}"

    @property
    def api_url(self) -> str:
        return f"https://{self.url_host}:{API_PORT}"


@dataclass(frozen=True)
class Plan:
    """A cluster's hosts, and the external etcd endpoints when etcd runs elsewhere."""

    cluster: str
    hosts: tuple[Host, ...]
    external: tuple[str, ...] = field(default=())

    @property
    def members(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.member)

    @property
    def nodes(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.node)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The etcd client URLs vipmon and the admin step use."""
        return self.external or tuple(h.client_url for h in self.members)

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{h.name}={h.peer_url}" for h in self.members)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def to_json(self) -> str:
        hosts = [vars(h) for h in self.hosts]
        data = {"cluster": self.cluster, "hosts": hosts, "external": list(self.external)}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data: dict[str, Any] = json.loads(text)
        hosts = tuple(Host(**h) for h in data["hosts"])
        return cls(data["cluster"], hosts, tuple(data.get("external", ())))


def parse_host(value: str, flag: str) -> Host:
    """``NAME=ADDRESS`` (an IPv4 or IPv6 address) as a host, or BootstrapError on ``flag``."""
    name, sep, address = value.partition("=")
    if not sep:
        raise BootstrapError(flag, f"{value!r} is not NAME=ADDRESS")
    try:
        check_name(name)
    except ValueError as exc:
        raise BootstrapError(flag, f"name {name!r}: {exc}") from None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise BootstrapError(flag, f"{address!r} is not an IPv4 or IPv6 address") from None
    if parsed.is_unspecified or parsed.is_multicast:
        raise BootstrapError(flag, f"{address} is not a host's address")
    return Host(name, str(parsed), member=True)


def check_unique(hosts: list[tuple[str, Host]]) -> None:
    """BootstrapError on the flag of the first host whose name or address came before."""
    names: set[str] = set()
    addresses: set[str] = set()
    for flag, host in hosts:
        if host.name in names:
            raise BootstrapError(flag, f"duplicate name {host.name!r}")
        if host.address in addresses:
            raise BootstrapError(flag, f"duplicate address {host.address}")
        names.add(host.name)
        addresses.add(host.address)


def _external(endpoints: list[str]) -> tuple[str, ...]:
    out = []
    for url in endpoints:
        try:
            clean = base_url(url)
        except ValueError as exc:
            raise BootstrapError("--etcd-endpoint", str(exc)) from None
        if not clean.startswith("https://"):
            raise BootstrapError("--etcd-endpoint", f"{url!r}: the bundles use etcd over https")
        out.append(clean)
    return tuple(out)


def make_plan(cluster: str, hosts: list[str], witnesses: list[str], endpoints: list[str]) -> Plan:
    """The plan for these flags' values, or BootstrapError naming the flag at fault.

    Refused: a bad name or address, a duplicate name or address, a witness
    beside anything but two hosts or beside external etcd, and a number of
    etcd members other than 1, 3 or 5 (an even count survives no more losses
    than the odd one below it, and two members survive none).
    """
    try:
        check_name(cluster)
    except ValueError as exc:
        raise BootstrapError("--cluster", f"{cluster!r}: {exc}") from None
    if not hosts:
        raise BootstrapError("--host", "give at least one NAME=ADDRESS")
    external = _external(endpoints)
    parsed = [("--host", parse_host(v, "--host")) for v in hosts]
    parsed += [("--witness", parse_host(v, "--witness")) for v in witnesses]
    check_unique(parsed)
    if witnesses:
        if len(witnesses) > 1:
            raise BootstrapError("--witness", "give at most one witness")
        if external:
            raise BootstrapError(
                "--witness", "a witness runs an etcd member: not with external etcd"
            )
        if len(hosts) != 2:
            raise BootstrapError(
                "--witness",
                f"a witness completes two nodes to three etcd members; with {len(hosts)} "
                "nodes give no witness",
            )
    if external:
        final = tuple(replace(h, member=False) for _, h in parsed)
    else:
        final = tuple(replace(h, node=flag == "--host") for flag, h in parsed)
        count = len(final)
        if count not in MEMBER_COUNTS:
            hint = "; add a third --host, or --witness" if count == 2 else ""
            raise BootstrapError(
                "--host", f"{count} etcd members: give 1, 3 or 5 (an odd number){hint}"
            )
    return Plan(cluster, final, external)
