"""Start-up of ``vipmon run`` on the embedded store (issue 20, finding 11).

A state directory the node cannot write is refused at start with exit 2,
rather than leaving the node negative for ever. Root passes every permission
check, so the node runs as root without capabilities (``setpriv``), which the
kernel checks like any user, or on a read-only bind mount in a private mount
namespace of its own (``unshare -m``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.nodes import REPO
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
