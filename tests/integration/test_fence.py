"""The kernel fence with real nftables, real processes and hosts in network namespaces.

Three node hosts each run a plain application on port 8080 that knows nothing of
vipmon, and ``vipmon run --fence-port 8080`` on the embedded store (one state
directory: the namespaces share the filesystem). The test reaches them from a
client host of its own. Every wait is bounded; nothing runs in the host's own
namespace, and every namespace and process goes at the end.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import PLAIN_APP, Host, World
from tests.support.nodes import REPO, wait_for

APP, API, TCP_MONITOR = 8080, 8700, 8081
NODES = ("n1", "n2", "n3")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux")


class Fenced:
    """The world, its nodes' vipmon processes and the client's view of them."""

    def __init__(self, world: World, tmp: Path) -> None:
        self.world, self.tmp = world, tmp
        self.client = world["client"]
        self.vipmon: dict[str, object] = {}
        for name in NODES:
            world[name].popen([sys.executable, "-c", PLAIN_APP, name, str(APP)])

    def start(self, name: str, *extra: str) -> None:
        host = self.world[name]
        argv = [
            sys.executable, "-m", "app", "run", "--node-id", name, "--host", host.addr,
            "--port", str(API), "--backend", "local", "--state-dir", str(self.tmp / "state"),
            "--fence-port", str(APP), "--lease-ttl", "2", *extra,
        ]  # fmt: skip
        self.vipmon[name] = host.popen(argv, log=self.tmp / f"{name}.log", cwd=REPO)

    def pid(self, name: str) -> int:
        return self.vipmon[name].pid  # type: ignore[attr-defined,no-any-return]

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def monitor(self, name: str) -> int | None:
        """The node's /monitor status from the client host, None if it does not answer."""
        with self.client.entered():
            conn = http.client.HTTPConnection(self.world[name].addr, API, timeout=0.5)
            try:
                conn.request("GET", "/monitor")
                return conn.getresponse().status
            except OSError:
                return None
            finally:
                conn.close()

    def accepts(self, name: str, port: int = APP) -> bool:
        """Whether the node's application port takes a new connection from the client."""
        with self.client.entered():
            try:
                socket.create_connection((self.world[name].addr, port), timeout=1).close()
            except ConnectionRefusedError:
                return False
        return True

    def connect(self, name: str) -> socket.socket:
        with self.client.entered():
            return socket.create_connection((self.world[name].addr, APP), timeout=2)

    def wait_serving(self, names: tuple[str, ...] = NODES, timeout: float = 20) -> None:
        """Until every node answers /monitor: its fence is in (it is installed first)."""
        wait_for(
            lambda: all(self.monitor(n) is not None for n in names),
            timeout=timeout,
            interval=0.05,
            what=f"every node of {names} to serve",
        )

    def positive(self, among: tuple[str, ...] = NODES) -> list[str]:
        return [n for n in among if self.monitor(n) == 200]

    def wait_master(self, among: tuple[str, ...] = NODES, timeout: float = 20) -> str:
        def one() -> str | None:
            found = self.positive(among)
            assert len(found) <= 1, f"two positive nodes: {found}"
            return found[0] if found else None

        return str(wait_for(one, timeout=timeout, interval=0.05, what=f"a master in {among}"))


@pytest.fixture
def fenced(tmp_path: Path) -> Iterator[Fenced]:
    with World([*NODES, "client"]) as world:
        yield Fenced(world, tmp_path)


def _ask(sock: socket.socket) -> bytes:
    """One request on a kept connection; the body (the answering host's name)."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    for _ in range(100):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed by the server")
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        length = [
            int(x.split(b":")[1])
            for x in head.split(b"\r\n")
            if x.lower().startswith(b"content-length")
        ]
        if sep and length and len(body) >= length[0]:
            return body
    raise AssertionError(f"no whole answer: {data!r}")


def _fence_outlives_nothing(f: Fenced, old: str, sig: signal.Signals) -> str:
    """Signal ``old``'s vipmon; its port must refuse before any other node is positive.

    Each round reads the other nodes' /monitor first, then ``old``'s port: once
    another node answers 200, the port must already have been seen refusing.
    """
    others = tuple(n for n in NODES if n != old)
    kept = f.connect(old)  # an established connection across the fault
    assert _ask(kept) == old.encode()
    refused_at = None
    os.kill(f.pid(old), sig)
    for i in range(2000):
        winners = f.positive(others)
        if winners:
            assert refused_at is not None and refused_at < i, (
                f"{winners} positive while {old}'s port still accepted"
            )
            break
        if refused_at is None and not f.accepts(old):
            refused_at = i
        time.sleep(0.005)
    else:
        raise AssertionError("no other node took over")
    assert not f.accepts(old)
    with pytest.raises(ConnectionResetError):  # with reset: the old connection is gone too
        _ask(kept)
    kept.close()
    return winners[0]


def test_the_fence_never_outlives_the_lease_on_a_freeze_and_a_crash(fenced: Fenced):
    f = fenced
    for name in NODES:
        f.start(name, "--tcp-monitor-port", str(TCP_MONITOR))
    f.wait_serving()  # before that, an application's port is not fenced yet
    master = f.wait_master()
    # Only the master's ports take connections: the application's and the TCP monitor.
    assert [n for n in NODES if f.accepts(n)] == [master]
    assert [n for n in NODES if f.accepts(n, TCP_MONITOR)] == [master]

    # Frozen: SIGSTOP of vipmon only; its application keeps running.
    second = _fence_outlives_nothing(f, master, signal.SIGSTOP)
    assert f.accepts(second)
    os.kill(f.pid(master), signal.SIGCONT)
    # Killed: SIGKILL of the new master's vipmon.
    third = _fence_outlives_nothing(f, second, signal.SIGKILL)
    assert third != second
    # Afterwards exactly the master's port accepts, the thawed node's included in the count.
    alive = tuple(n for n in NODES if n != second)
    master_now = f.wait_master(alive)
    assert [n for n in NODES if f.accepts(n)] == [master_now]


def _status(host: Host) -> str:
    done = host.run([sys.executable, "-m", "app", "fence", "status"])
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_start_exit_a_missing_capability_and_a_failed_refresh_are_fail_closed(fenced: Fenced):
    f = fenced
    w = f.world
    # No CAP_NET_ADMIN: refused at start, exit 2, one line naming the field.
    argv = [sys.executable, "-m", "app", "run", "--fence-port", str(APP), "--state-dir",
            str(f.tmp / "nocap")]  # fmt: skip
    done = w["n3"].run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", *argv])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "fence_port" in lines[0] and "CAP_NET_ADMIN" in lines[0], lines
    assert f.accepts("n3")  # nothing was installed: vipmon never ran there

    # Start: closed until master. n2 can never be master (priority 0).
    f.start("n2", "--priority", "0")
    f.wait_serving(("n2",))
    assert not f.accepts("n2")
    assert "new connections:  refused" in _status(w["n2"])
    f.start("n1")
    wait_for(lambda: f.monitor("n1") == 200, timeout=20, what="n1 master")
    assert f.accepts("n1") and not f.accepts("n2")
    assert "new connections:  allowed: 8080" in _status(w["n1"])

    # A failed refresh: the table vanishes under the master. It turns negative, says why,
    # gives its lease up, and puts the table back, closed.
    f.start("n3")
    f.wait_serving(("n3",))
    gone = w["n1"].run(["nft", "delete", "table", "inet", "vipmon_vipmon"])
    assert gone.returncode == 0, gone.stderr
    wait_for(lambda: f.monitor("n1") != 200, timeout=20, what="n1 negative, its fence failed")
    wait_for(lambda: f.monitor("n3") == 200, timeout=20, what="n3 master")
    assert "fence on ports 8080 failed" in f.log("n1")
    wait_for(lambda: not f.accepts("n1"), timeout=20, what="n1's table back, closed")
    assert f.positive() == ["n3"]

    # Exit: SIGTERM; the port stays refused after the process is gone.
    proc = f.vipmon["n3"]
    os.kill(f.pid("n3"), signal.SIGTERM)
    assert proc.wait(20) == 0  # type: ignore[attr-defined]
    assert not f.accepts("n3")
    assert "new connections:  refused" in _status(w["n3"])
