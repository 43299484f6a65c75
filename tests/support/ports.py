"""Free loopback ports for test servers.

A port found by binding to 0 lies in the kernel's ephemeral range, so between
our close and the server's bind any other bind to 0 (a proxy's listener) or
outgoing connection may take it: etcd then dies with "address already in
use". The ports handed out here lie below that range, where the kernel
assigns nothing by itself, and above the fixed ports of deploy/compose
(8080, 87xx, 2379x, 2380x). Each is free when handed out, and this process
never hands out the same port twice.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 24000
_TRIES = 500
_handed: set[int] = set()
_rng = random.Random()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` a moment ago, outside the ephemeral range when it can be."""
    end = _ephemeral_start()
    if end - _LOWEST > 1000:
        for _ in range(_TRIES):
            port = _rng.randrange(_LOWEST, end)
            if port not in _handed and _bindable(host, port):
                _handed.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # an odd range: as before
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _handed.add(port)
    return port
