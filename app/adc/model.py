"""The topology a generated config describes: one VIP and the nodes behind it.

Every parse error is an :class:`AdcError` naming the command-line argument it
came from and the reason, so the CLI can print it and exit 2.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from app.errors import ArgumentError

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_HOST_CHARS = _NAME_CHARS | {":"}


class AdcError(ArgumentError):
    """An argument of ``vipmon adc-config`` is invalid. The CLI exits 2."""


@dataclass(frozen=True)
class Endpoint:
    """A host (name, IPv4 or IPv6 address) and a TCP port."""

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AdcNode:
    """One node: the application at ``app`` and vipmon's ``/monitor`` on ``monitor_port``."""

    name: str
    app: Endpoint
    monitor_port: int

    @property
    def monitor(self) -> Endpoint:
        return Endpoint(self.app.host, self.monitor_port)


@dataclass(frozen=True)
class TlsCheck:
    """Checks over TLS to vipmon's monitor port. Paths are files on the ADC.

    ``ca_file`` signed the nodes' certificates; ``server_name``, when given, is
    sent as SNI and required in the certificate; ``client_cert`` (and
    ``client_key``, where the ADC takes it apart) is what the ADC presents to
    nodes that ask for a client certificate.
    """

    ca_file: str
    server_name: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


def parse_port(text: str, argument: str) -> int:
    """A TCP port 1..65535, or AdcError."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise AdcError(argument, f"{text!r} is not a port number (1-65535)")
    return int(text)


def parse_endpoint(text: str, argument: str) -> Endpoint:
    """``HOST:PORT`` or ``[IPV6]:PORT``, or AdcError."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise AdcError(argument, f"{text!r}: write an IPv6 address as [ADDR]:PORT")
        port_text = rest[1:]
        _check_ipv6(host, text, argument)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise AdcError(argument, f"{text!r} is not HOST:PORT")
        if ":" in host:
            raise AdcError(argument, f"{text!r}: write an IPv6 address as [ADDR]:PORT")
    if not set(host) <= _HOST_CHARS:
        raise AdcError(argument, f"{host!r} is not a host name or address")
    return Endpoint(host, parse_port(port_text, argument))


def _check_ipv6(host: str, text: str, argument: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise AdcError(argument, f"{text!r}: {host!r} is not an IPv6 address") from None


def parse_node(text: str, default_monitor_port: int) -> AdcNode:
    """``NAME=HOST:PORT`` or ``NAME=HOST:PORT/MONITOR_PORT``, or AdcError on ``--node``."""
    name, sep, rest = text.partition("=")
    if not sep:
        raise AdcError("--node", f"{text!r} is not NAME=HOST:PORT[/MONITOR_PORT]")
    check_name(name, "--node")
    address, slash, monitor_text = rest.partition("/")
    app = parse_endpoint(address, "--node")
    monitor_port = parse_port(monitor_text, "--node") if slash else default_monitor_port
    return AdcNode(name, app, monitor_port)


def parse_nodes(texts: list[str], default_monitor_port: int) -> tuple[AdcNode, ...]:
    """Every ``--node``; at least one, names and addresses unique."""
    if not texts:
        raise AdcError("--node", "give at least one node")
    nodes = tuple(parse_node(t, default_monitor_port) for t in texts)
    seen_names: set[str] = set()
    seen_apps: set[Endpoint] = set()
    for node in nodes:
        if node.name in seen_names:
            raise AdcError("--node", f"the name {node.name!r} is given twice")
        if node.app in seen_apps:
            raise AdcError("--node", f"{node.app} is given twice")
        seen_names.add(node.name)
        seen_apps.add(node.app)
    return nodes


def require_ip(endpoint: Endpoint, argument: str, why: str) -> None:
    """AdcError unless ``endpoint.host`` is a literal IP address."""
    try:
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        raise AdcError(argument, f"{endpoint.host!r} is not an IP address; {why}") from None


def check_name(text: str, argument: str) -> str:
    """An object name for the ADC: the same characters as a node name."""
    if not text or len(text) > 63 or not set(text) <= _NAME_CHARS:
        raise AdcError(argument, f"{text!r}: use 1 to 63 characters from A-Z a-z 0-9 . _ -")
    return text
