"""Read HAProxy's runtime API (the stats socket): ``show servers state``.

Used by ``vipmon demo``, the tests and the bench. Each call opens the UNIX
socket, sends one command and reads to EOF within ``timeout`` seconds; an
unreachable or silent socket raises ``OSError`` (``TimeoutError`` included).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

OP_STATES = {0: "DOWN", 1: "STARTING", 2: "UP", 3: "NOLB"}
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, DNS, hostname
ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited


@dataclass(frozen=True)
class ServerState:
    """One row of ``show servers state``: columns 4, 6 and 7 (1-based)."""

    name: str
    op_state: int
    admin_state: int

    @property
    def up(self) -> bool:
        """Operationally UP: ``srv_op_state`` 2, whatever the admin state."""
        return self.op_state == 2

    @property
    def serving(self) -> bool:
        """UP and neither in maintenance nor draining: it gets new traffic."""
        return self.up and not self.admin_state & (ADMIN_MAINT | ADMIN_DRAIN)

    @property
    def label(self) -> str:
        """``UP``, ``DOWN``, ``NOLB``, ``MAINT``, ``DRAIN`` as HAProxy's stats page says."""
        if self.admin_state & ADMIN_MAINT:
            return "MAINT"
        if self.admin_state & ADMIN_DRAIN:
            return "DRAIN"
        return OP_STATES.get(self.op_state, str(self.op_state))


def command(path: str, text: str, timeout: float = 1.0) -> str:
    """Send one runtime API command and return the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(text.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def parse_servers_state(text: str) -> dict[str, ServerState]:
    """Server name -> state, from the answer to ``show servers state <backend>``."""
    states = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or line.startswith("#"):
            continue
        states[fields[3]] = ServerState(fields[3], int(fields[5]), int(fields[6]))
    return states


def servers_state(path: str, backend: str, timeout: float = 1.0) -> dict[str, ServerState]:
    """The live state of every server of ``backend``."""
    return parse_servers_state(command(path, f"show servers state {backend}", timeout))
