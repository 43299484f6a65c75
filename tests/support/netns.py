"""A world of hosts in network namespaces, for tests of the fence and of real hosts.

Each :class:`Host` is a network namespace the test made, with ``lo`` up and an
``eth0`` on one bridge (itself in a namespace of its own, the switch), addressed
10.77.0.<n>/24. Nothing here touches the host's own namespace, links or ruleset.

Processes run in a host with ``ip netns exec`` (which execs, so the PID is the
process's own) and are stopped by PID. The test process itself reaches a host by
entering its namespace on the calling thread only (:meth:`Host.entered`): sockets
made inside keep that namespace. :meth:`World.close` stops every process it started
and deletes every namespace, also after a failure.

Faults: :meth:`Host.link` (the host's link down or up), :meth:`World.drop` (a
one-way partition: nftables drop in the receiving host's own namespace).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_CLONE_NEWNET = 0x40000000
_SUBNET = "10.77.0"
_counter = itertools.count(1)
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass
class Host:
    """One host: a network namespace with an address on the world's bridge."""

    name: str
    netns: str
    addr: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(
        self, argv: Sequence[str], *, log: Path | None = None, **kw: object
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in this host; its output goes to ``log`` (or nowhere)."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(  # type: ignore[call-overload]
                ["ip", "netns", "exec", self.netns, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **kw,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in this host to its end; its output."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread in this host's network namespace, for the block."""
        back = f"/proc/self/task/{threading_id()}/ns/net"
        fd = os.open(back, os.O_RDONLY)
        try:
            _setns(f"/run/netns/{self.netns}")
            try:
                yield
            finally:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:  # never leave the thread elsewhere
                    os._exit(99)
        finally:
            os.close(fd)

    def link(self, up: bool) -> None:
        """Set the host's eth0 up or down (the cable pulled, or put back)."""
        _ip("-n", self.netns, "link", "set", "eth0", "up" if up else "down")

    def signal_all(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every live process this world started on the host."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

    def stop_all(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout``, every process started on the host."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def threading_id() -> int:
    return int(_libc.syscall(186))  # gettid on x86_64


class World:
    """Hosts on one bridge. Use as a context manager; everything goes at the end."""

    def __init__(self, names: Sequence[str]) -> None:
        self.tag = f"vm{os.getpid() % 100000}x{next(_counter)}"
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []
        try:
            self._make_ns(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, name in enumerate(names, start=1):
                self.add_host(name, i)
        except BaseException:
            self.close()
            raise

    def _make_ns(self, netns: str) -> None:
        _ip("netns", "add", netns)
        self._made.append(netns)
        _ip("-n", netns, "link", "set", "lo", "up")

    def add_host(self, name: str, index: int) -> Host:
        """A new host ``name`` at 10.77.0.<index>, cabled to the bridge."""
        netns = f"{self.tag}-{name}"
        self._make_ns(netns)
        port = f"p{index}"
        _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", netns)  # fmt: skip
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        addr = f"{_SUBNET}.{index}"
        _ip("-n", netns, "addr", "add", f"{addr}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        host = Host(name, netns, addr)
        self.hosts[name] = host
        return host

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def drop(self, src: str, dst: str) -> None:
        """One-way partition: ``dst`` drops every packet from ``src`` (its own ruleset)."""
        host = self.hosts[dst]
        rules = (
            "add table inet worldfault\n"
            "add chain inet worldfault input { type filter hook input priority -10; }\n"
            f"add rule inet worldfault input ip saddr {self.hosts[src].addr} drop\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", host.netns, "nft", "-f", "-"],
            input=rules, text=True, check=True, capture_output=True, timeout=10,
        )  # fmt: skip

    def heal(self, dst: str) -> None:
        """Remove every drop rule of ``dst``."""
        self.hosts[dst].run(["nft", "delete", "table", "inet", "worldfault"])

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop_all()
        for netns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)
        self._made.clear()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: A plain application that knows nothing of vipmon: it answers every GET with its
#: host's name, over HTTP/1.1 keep-alive. argv: the name, the port.
PLAIN_APP = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name, port = sys.argv[1], int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stall
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("", port), H).serve_forever()
"""
