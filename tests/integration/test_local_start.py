"""Start-up of ``vipmon run`` on the embedded store (issue 20, findings 3 and 11).

* A state directory the node cannot write is refused at start with exit 2,
  rather than leaving the node negative for ever. Root passes every permission
  check, so the node runs as root without capabilities (``setpriv``), which the
  kernel checks like any user, or on a read-only bind mount in a private mount
  namespace of its own (``unshare -m``).
* A file another live host renews is refused with exit 2, and nothing of that
  host's is dropped; a file whose other boot is dead is taken over. The other
  host is played by this test process: a :class:`LocalStore` with its own boot
  id and a clock far from this host's, on the node's file, through the store's
  constructor seams. The node itself runs unchanged, with this host's boot id.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.clock import MonotonicClock
from app.election.records import leader_key
from app.store.local import LocalStore
from tests.support.nodes import REPO, Cluster, Node
from tests.support.ports import free_port

ROOT = os.geteuid() == 0
#: Root with no capability at all: file permissions apply to it as to any user.
NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if ROOT else []


def read_only(state: Path) -> list[str]:
    """A private mount namespace of the node's own, where ``state`` is a read-only bind mount."""
    remount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return [
        *(["unshare", "-m"] if ROOT else ["unshare", "-r", "-m"]),
        "sh",
        "-c",
        remount,
        str(state),
    ]


def run_node(state: Path, prefix: list[str]) -> subprocess.CompletedProcess[str]:
    """``vipmon run`` on ``state`` behind ``prefix``; it must end by itself within 30 s.

    On timeout ``subprocess.run`` kills the child it started (its PID only) and raises.
    """
    cmd = [*prefix, sys.executable, "-m", "app", "run", "--node-id", "n1"]
    cmd += ["--host", "127.0.0.1", "--port", str(free_port()), "--state-dir", str(state)]
    env = {"PATH": "/usr/bin:/bin"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30, env=env)


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("directory not writable", "permission denied"),
        ("database not writable", "permission denied"),
        ("read-only mount", "read-only file system"),
    ],
)
def test_a_state_dir_that_cannot_be_written_is_refused_at_start(
    tmp_path: Path, case: str, reason: str
):
    state = tmp_path / "state"
    state.mkdir()
    prefix = NO_CAPS
    if case == "directory not writable":
        state.chmod(0o555)
    elif case == "database not writable":
        (state / "vipmon.sqlite").touch()  # an empty file is an empty database
        (state / "vipmon.sqlite").chmod(0o444)
    else:
        prefix = read_only(state)
    try:
        proc = run_node(state, prefix)
    finally:
        state.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    line = last_line(proc)
    assert line.startswith("vipmon: invalid setting 'state_dir': "), proc.stderr
    assert str(state) in line and reason in line.lower()
    assert "Traceback" not in proc.stderr


class OtherHost:
    """A host that shares the node's file: its own boot id and clock, renewing a leader key.

    Runs on a thread of its own until :meth:`stop`. ``lost`` counts the renewals the
    store answered with "gone": a node that drops this host's lease makes it non-zero.
    """

    def __init__(self, path: Path, cluster: str = "vipmon") -> None:
        self.store = LocalStore(path, timeout=1.0, clock=_Shifted(-100_000.0), boot_id="other-host")
        self.key = leader_key(cluster)
        self.term = 0
        self.renewals = 0
        self.lost = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> OtherHost:
        self._thread.start()
        assert self._ready.wait(10), "the other host did not take the key"
        return self

    async def _run(self) -> None:
        try:
            lease = await self.store.grant(2)
            won = await self.store.acquire(self.key, b"other host", lease.lease_id)
            self.term = won.create_revision
            self._ready.set()
            for _ in range(600):  # 0.1 s apart: a minute at most
                if self._stop.wait(0.1):
                    break
                if await self.store.keepalive(lease.lease_id) == 2.0:
                    self.renewals += 1
                else:
                    self.lost += 1
        finally:
            await self.store.close()

    async def holder_term(self) -> int:
        path, clock = self.store.path, self.store.clock
        store = LocalStore(path, timeout=1.0, clock=clock, boot_id="other-host")
        try:
            kv, _ = await store.get(self.key)
            return kv.create_revision if kv is not None else 0
        finally:
            await store.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class _Shifted(MonotonicClock):
    """This host's clock moved by ``shift`` seconds: another boot's ``CLOCK_BOOTTIME``."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def now(self) -> float:
        return super().now() + self.shift


@pytest.fixture
def other_host(tmp_path: Path) -> Iterator[OtherHost]:
    (tmp_path / "state").mkdir()
    host = OtherHost(tmp_path / "state" / "vipmon.sqlite").start()
    try:
        yield host
    finally:
        host.stop()


def test_a_file_another_live_host_renews_is_refused(tmp_path: Path, other_host: OtherHost):
    node = Node("n1", free_port(), ["--state-dir", str(tmp_path / "state")], tmp_path / "n1.log")
    try:
        node.spawn()
        assert node.wait(30) == 2, node.log()
    finally:
        node.stop()
    line = node.log().strip().splitlines()[-1]
    assert line.startswith("vipmon: invalid setting 'state_dir': "), node.log()
    assert str(tmp_path / "state") in line and "the embedded store is for one host" in line
    renewed = other_host.renewals
    assert other_host.lost == 0, "the node dropped the other host's live lease"
    assert asyncio.run(other_host.holder_term()) == other_host.term
    for _ in range(100):  # the other host goes on renewing after the node has gone
        if other_host.renewals > renewed + 2:
            break
        threading.Event().wait(0.05)
    assert other_host.lost == 0 and other_host.renewals > renewed


def test_the_leases_of_a_dead_boot_are_taken_over(tmp_path: Path):
    """A reboot: the file's other boot renews nothing, so its leader key goes and a node wins."""
    state = tmp_path / "state"
    state.mkdir()

    async def previous_boot() -> int:
        clock = _Shifted(1_000_000.0)  # that boot's uptime was long
        store = LocalStore(state / "vipmon.sqlite", timeout=1.0, clock=clock, boot_id="last-boot")
        try:
            lease = await store.grant(2)
            won = await store.acquire(leader_key("vipmon"), b"dead", lease.lease_id)
            return won.create_revision
        finally:
            await store.close()

    old_term = asyncio.run(previous_boot())
    with Cluster(tmp_path, ["--state-dir", str(state)]) as cluster:
        node = cluster.add("n1")
        assert cluster.wait_master() is node
        assert int(node.monitor()[1].split("term=")[1].split()[0]) > old_term
