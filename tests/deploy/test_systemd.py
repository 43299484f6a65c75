"""deploy/systemd: the unit passes ``systemd-analyze verify``, and the notify protocol.

The drop-ins are verified with the unit, and the fence drop-in's merged effect is read
back from systemd's own parser (``systemd-analyze security --offline``): CAP_NET_ADMIN
and AF_NETLINK reach the service, nothing else does. No unit is ever started here.

The watchdog is fed only by the election loop's heartbeat: in-process, a fake
heartbeat that stops advancing stops the pings; across a real ``vipmon run``, the
messages arrive in order (READY, STATUS on becoming master, WATCHDOG, STOPPING).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.clock import FakeClock, MonotonicClock
from app.role import Role, Transition
from app.systemd import Notifier, Systemd, Watchdog
from tests.support.haproxy import short_dir
from tests.support.nodes import REPO, Node, wait_for
from tests.support.ports import free_port

UNIT_DIR = REPO / "deploy" / "systemd"
VENV_VIPMON = Path(sys.executable).parent / "vipmon"  # this venv's console script
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if SYSTEMD_ANALYZE is None:
        pytest.fail("systemd-analyze is missing: install Debian's systemd (make system-deps)")
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def verify(unit_dir: Path, name: str = "vipmon.service") -> subprocess.CompletedProcess[str]:
    return analyze("verify", "--man=no", str(unit_dir / name))


def unit_copy(tmp: Path, *, drop_ins: tuple[str, ...] = (), extra: str = "") -> Path:
    """The shipped unit with ExecStart pointed at this venv's vipmon (verify needs the binary).

    ``drop_ins`` names the shipped drop-ins copied into ``vipmon.service.d/`` beside it.
    """
    text = (UNIT_DIR / "vipmon.service").read_text()
    assert "\nExecStart=/opt/vipmon/bin/vipmon run\n" in text
    assert VENV_VIPMON.exists(), VENV_VIPMON
    (tmp / "vipmon.service").write_text(
        text.replace("ExecStart=/opt/vipmon/bin/vipmon", f"ExecStart={VENV_VIPMON}") + extra
    )
    if drop_ins:
        (tmp / "vipmon.service.d").mkdir()
    for drop_in in drop_ins:
        shutil.copy(UNIT_DIR / "vipmon.service.d" / drop_in, tmp / "vipmon.service.d")
    return tmp


SHIPPED_DROP_INS = sorted(p.name for p in (UNIT_DIR / "vipmon.service.d").glob("*.conf"))
DROP_IN_SETS = [(), *((d,) for d in SHIPPED_DROP_INS), tuple(SHIPPED_DROP_INS)]


@pytest.mark.parametrize("drop_ins", DROP_IN_SETS, ids=lambda d: "+".join(("unit", *d)))
def test_unit_verifies_with_empty_stderr(tmp_path: Path, drop_ins: tuple[str, ...]):
    done = verify(unit_copy(tmp_path, drop_ins=drop_ins))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_fence_drop_in_is_shipped():
    assert SHIPPED_DROP_INS == ["fence.conf", "l2-vip.conf"]


def test_verify_check_catches_a_bad_key(tmp_path: Path):
    """The check above can fail: systemd-analyze exits 0 on an unknown key, but says so."""
    done = verify(unit_copy(tmp_path, extra="WatchdogSecs=10s\n"))
    assert "Unknown key" in done.stderr


def test_verify_reads_the_drop_ins(tmp_path: Path):
    """A bad key in a drop-in is reported too: verify does read ``vipmon.service.d/``."""
    unit_copy(tmp_path, drop_ins=("fence.conf",))
    with (tmp_path / "vipmon.service.d" / "fence.conf").open("a") as f:
        f.write("AmbientCapabilitys=CAP_NET_ADMIN\n")
    done = verify(tmp_path)
    assert "fence.conf" in done.stderr
    assert "Unknown key" in done.stderr


# -- what the fence drop-in grants, merged by systemd itself -------------------


def security(unit_dir: Path) -> dict[str, bool]:
    """``systemd-analyze security --offline``: each check's json_field -> restricted?

    It parses the unit with its drop-ins as PID 1 would, without a running systemd;
    ``True`` means the unit sets the restriction.
    """
    unit = str(unit_dir / "vipmon.service")
    done = analyze("security", "--offline=true", "--json=short", "--no-pager", unit)
    assert done.returncode == 0, done.stderr
    return {check["json_field"]: bool(check["set"]) for check in json.loads(done.stdout)}


def merged_list(unit_dir: Path, key: str) -> list[str]:
    """A list setting of [Service] after the drop-ins: empty resets, the rest appends."""
    files = [unit_dir / "vipmon.service", *sorted((unit_dir / "vipmon.service.d").glob("*.conf"))]
    value: list[str] = []
    for path in files:
        for line in path.read_text().splitlines():
            if line.startswith(f"{key}="):
                words = line.removeprefix(f"{key}=").split()
                value = value + words if words else []
    return value


GRANTED = ("CapabilityBoundingSet_CAP_NET_ADMIN", "RestrictAddressFamilies_AF_NETLINK")
STILL_DENIED = (
    "NoNewPrivileges",
    "UserOrDynamicUser",
    "ProtectKernelModules",
    "ProtectKernelTunables",
    "CapabilityBoundingSet_CAP_SYS_ADMIN",
    "CapabilityBoundingSet_CAP_SYS_MODULE",
    "CapabilityBoundingSet_CAP_NET_BIND_SERVICE_BROADCAST_RAW)",
    "RestrictAddressFamilies_AF_PACKET",
    "RestrictAddressFamilies_OTHER",
)


def test_the_bare_unit_grants_no_capability(tmp_path: Path):
    """The check below can fail: without the drop-in, systemd reports both restricted."""
    checks = security(unit_copy(tmp_path))
    assert all(checks[field] for field in (*GRANTED, *STILL_DENIED, "AmbientCapabilities"))
    assert merged_list(tmp_path, "AmbientCapabilities") == []


def test_the_fence_drop_in_grants_net_admin_and_netlink_only(tmp_path: Path):
    unit_dir = unit_copy(tmp_path, drop_ins=("fence.conf",))
    checks = security(unit_dir)
    assert [field for field in GRANTED if checks[field]] == [], "still restricted"
    assert checks["AmbientCapabilities"] is False, "the process receives ambient capabilities"
    assert [field for field in STILL_DENIED if not checks[field]] == [], "opened too"
    # Ambient, within the bounding set, is what the dynamic user's process holds.
    assert merged_list(unit_dir, "AmbientCapabilities") == ["CAP_NET_ADMIN"]
    assert merged_list(unit_dir, "CapabilityBoundingSet") == ["CAP_NET_ADMIN"]
    assert merged_list(unit_dir, "RestrictAddressFamilies") == [
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    ]
    environment = merged_list(unit_dir, "Environment")
    assert any(word.startswith("VIPMON_FENCE_PORT=") for word in environment), environment


def test_unit_states_the_settings_the_protocol_needs():
    text = (UNIT_DIR / "vipmon.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=10s",
        "StateDirectory=vipmon",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "DynamicUser=yes",
        "EnvironmentFile=-/etc/vipmon/vipmon.env",
        "Restart=on-failure",
    ):
        assert f"\n{line}\n" in text, line
    drop_in = (UNIT_DIR / "vipmon.service.d" / "l2-vip.conf").read_text()
    assert "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW" in drop_in
    fence = (UNIT_DIR / "vipmon.service.d" / "fence.conf").read_text()
    assert "\nAmbientCapabilities=CAP_NET_ADMIN\n" in fence


# -- the notify protocol in-process ------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, and its NOTIFY_SOCKET name."""
    name = f"@vipmon-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    try:
        yield sock, name
    finally:
        sock.close()


def pending(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock``, without blocking."""
    out = []
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        for _ in range(10_000):
            try:
                out.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        sock.settimeout(timeout)
    return out


def test_from_environ_reads_and_removes_the_variables(listener):
    _, name = listener
    env = {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1", "X": "y"}
    notifier = Notifier.from_environ(env)
    try:
        assert env == {"X": "y"}
        assert notifier.enabled
        assert notifier.watchdog_usec == 0  # WATCHDOG_PID names another process
    finally:
        notifier.close()
    assert not Notifier.from_environ({}).enabled
    assert Notifier.from_environ({}).send("READY=1") is False


def test_ready_carries_the_latest_status_and_transitions_follow(listener):
    sock, name = listener
    notifier = Notifier(name)
    systemd = Systemd(
        notifier, Watchdog(notifier, lambda: 0.0, FakeClock(), max_stale=3, interval=0)
    )
    try:
        systemd.observer.transition(Transition(0.0, Role.UNKNOWN, Role.STANDBY, "joined"), 3)
        assert pending(sock) == []  # nothing before READY
        systemd.ready("serving on 127.0.0.1:1")
        systemd.observer.transition(Transition(0.0, Role.STANDBY, Role.MASTER, "acquired"), 4)
        systemd.stopping()
    finally:
        systemd.close()
    assert pending(sock) == [
        "READY=1\nSTATUS=STANDBY term=3: joined (serving on 127.0.0.1:1)",
        "STATUS=MASTER term=4: acquired",
        "STOPPING=1\nSTATUS=stopping: resigning",
    ]


def test_watchdog_tick_pings_only_while_the_heartbeat_is_fresh(listener):
    sock, name = listener
    clock = FakeClock()
    beat = [clock.now()]
    notifier = Notifier(name, watchdog_usec=1_000_000)
    watchdog = Watchdog(notifier, lambda: beat[0], clock, max_stale=3.0)
    try:
        assert watchdog.interval == 0.5
        sent = []
        for _ in range(4):  # the loop goes on: every tick pings
            clock.advance(0.5)
            beat[0] = clock.now()
            sent.append(watchdog.tick())
        assert sent == [True] * 4
        assert pending(sock) == ["WATCHDOG=1"] * 4
        clock.advance(2.9)  # frozen, but within the window
        assert watchdog.tick() is True
        clock.advance(0.1)  # frozen for 3 s: no more pings
        assert [watchdog.tick() for _ in range(3)] == [False] * 3
        assert pending(sock) == ["WATCHDOG=1"]
        beat[0] = clock.now()  # the loop resumes
        assert watchdog.tick() is True
    finally:
        notifier.close()


class Heartbeat:
    """A heartbeat source driven by a thread of ours, which can be frozen."""

    def __init__(self) -> None:
        self.value = time.monotonic()
        self.frozen = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.done.wait(0.01):
            if not self.frozen.is_set():
                self.value = time.monotonic()


def test_watchdog_thread_stops_pinging_when_the_heartbeat_freezes(listener):
    sock, name = listener
    beat = Heartbeat()
    beat.thread.start()
    notifier = Notifier(name, watchdog_usec=100_000)  # a ping every 50 ms
    watchdog = Watchdog(notifier, lambda: beat.value, MonotonicClock(), max_stale=0.3)
    watchdog.start()
    try:
        for _ in range(3):
            assert sock.recv(64) == b"WATCHDOG=1"
        beat.frozen.set()
        frozen_at = beat.value
        wait_for(lambda: time.monotonic() > frozen_at + 0.3 + 0.2, timeout=5, what="staleness")
        pending(sock)  # pings sent before the window closed
        quiet_until = time.monotonic() + 0.5  # ten ping intervals
        wait_for(lambda: time.monotonic() > quiet_until, timeout=5, what="ten intervals")
        assert pending(sock) == []
        beat.frozen.clear()
        assert sock.recv(64) == b"WATCHDOG=1"
    finally:
        watchdog.stop()
        beat.done.set()
        beat.thread.join(5)
        notifier.close()


# -- the notify protocol from a real process -----------------------------------


def test_vipmon_run_notifies_in_order(tmp_path: Path):
    with short_dir() as d:
        path = d / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(10)
        node = Node(
            "sd1",
            free_port(),
            ["--backend", "local", "--state-dir", str(tmp_path / "state")],
            tmp_path / "sd1.log",
            env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"},
        )
        try:
            node.start()
            messages = [sock.recv(4096).decode()]
            for _ in range(200):
                if sum(m == "WATCHDOG=1" for m in messages) >= 3 and any(
                    "MASTER" in m for m in messages
                ):
                    break
                messages.append(sock.recv(4096).decode())
            assert node.is_master()
            node.signal(signal.SIGTERM)
            for _ in range(200):
                messages.append(sock.recv(4096).decode())
                if messages[-1].startswith("STOPPING=1"):
                    break
            assert node.proc is not None
            assert node.proc.wait(15) == 0
            messages.extend(pending(sock))
        finally:
            node.kill()
            sock.close()
    print("notify messages:", messages)
    assert messages[0].startswith("READY=1\nSTATUS=")
    master = next(i for i, m in enumerate(messages) if "STATUS=MASTER" in m)
    stopping = next(i for i, m in enumerate(messages) if m.startswith("STOPPING=1"))
    pings = [i for i, m in enumerate(messages) if m == "WATCHDOG=1"]
    assert len([i for i in pings if master < i < stopping]) >= 2
    assert all(i < stopping for i in pings), "no ping after STOPPING"
    assert all(m.startswith(("READY=1", "STATUS=", "WATCHDOG=1", "STOPPING=1")) for m in messages)
