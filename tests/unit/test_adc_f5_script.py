"""The F5 script of ``vipmon adc-config f5`` can be run again, and leaves the same config.

There is no BIG-IP here: the script runs under ``/bin/sh`` against
``tests/support/fake_tmsh.py``, a test double of the unavailable tmsh that keeps
the objects in a JSON file and refuses what tmsh refuses (``create`` of an
object that exists, ``modify`` of one that does not, a node's address, ``add``
of a pool member already there). What it shows is the script's logic; tmsh's
exact grammar is checked only as far as that double models it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.support import fake_tmsh

NODES = ["--node", "n1=10.0.0.11:8080", "--node", "n2=10.0.0.12:8080"]
BASE = ["--vip", "10.0.0.100:443", *NODES]
TLS_CLIENT = ["--client-cert", "/c/m.crt", "--client-key", "/c/m.key"]


def script(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> Path:
    assert main(["adc-config", "f5", *argv]) == 0
    path = tmp_path / f"vipmon-tmsh-{len(list(tmp_path.glob('*.sh')))}.sh"
    path.write_text(capsys.readouterr().out)
    return path


class FakeBigIp:
    """A ``tmsh`` on PATH (the double) and the state it keeps, in one directory."""

    def __init__(self, root: Path) -> None:
        bin_dir = root / "bin"
        bin_dir.mkdir(parents=True)
        tmsh = bin_dir / "tmsh"
        tmsh.write_text(f'#!/bin/sh\nexec {sys.executable} {fake_tmsh.__file__} "$@"\n')
        tmsh.chmod(0o755)
        self.state = root / "state.json"
        self.env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_TMSH_STATE": str(self.state)}

    def run(self, path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", str(path)], env=self.env, capture_output=True, text=True, timeout=60
        )

    def objects(self) -> dict[str, object]:
        state = json.loads(self.state.read_text())
        assert state["saved"] == state["objects"]  # the script ends with save sys config
        return dict(state["objects"])

    def log(self) -> list[str]:
        return list(json.loads(self.state.read_text())["log"])


def test_the_script_runs_twice_and_leaves_the_same_config(capsys, tmp_path):
    """Issue 20: a second run stopped at the first `create` of an object that exists."""
    path = script(capsys, tmp_path, *BASE)
    bigip = FakeBigIp(tmp_path / "bigip")
    first = bigip.run(path)
    assert first.returncode == 0, first.stderr
    after_one = bigip.objects()
    assert sorted(after_one) == [
        "ltm monitor http /Common/vipmon_monitor",
        "ltm node /Common/n1",
        "ltm node /Common/n2",
        "ltm pool /Common/vipmon_pool",
        "ltm virtual /Common/vipmon_vs",
    ]
    assert after_one["ltm pool /Common/vipmon_pool"]["members"] == {
        "/Common/n1:8080": "",
        "/Common/n2:8080": "",
    }
    runs = len(bigip.log())
    second = bigip.run(path)
    assert second.returncode == 0, second.stderr
    assert bigip.objects() == after_one
    assert not any(cmd.startswith("create ") for cmd in bigip.log()[runs:])


def test_a_new_script_brings_existing_objects_to_its_values(capsys, tmp_path):
    """Timers, members and the VIP of an earlier run are replaced, as a fresh run sets them."""
    bigip = FakeBigIp(tmp_path / "bigip")
    earlier = script(capsys, tmp_path, "--vip", "10.0.0.99:80", *NODES, "--profile", "fast")
    assert bigip.run(earlier).returncode == 0
    later_args = [*BASE, "--node", "n3=10.0.0.13:8080"]
    later = script(capsys, tmp_path, *later_args)
    done = bigip.run(later)
    assert done.returncode == 0, done.stderr

    fresh = FakeBigIp(tmp_path / "fresh")
    assert fresh.run(script(capsys, tmp_path, *later_args)).returncode == 0
    assert bigip.objects() == fresh.objects()


def test_an_existing_node_is_kept_and_said_so(capsys, tmp_path):
    """tmsh cannot change a node's address: the script keeps the node and prints a line."""
    bigip = FakeBigIp(tmp_path / "bigip")
    assert bigip.run(script(capsys, tmp_path, *BASE)).returncode == 0
    moved = ["--vip", "10.0.0.100:443", "--node", "n1=10.0.0.21:8080", NODES[2], NODES[3]]
    done = bigip.run(script(capsys, tmp_path, *moved))
    assert done.returncode == 0, done.stderr
    assert bigip.objects()["ltm node /Common/n1"] == {"address": "10.0.0.11"}
    assert "ltm node /Common/n1 exists: kept" in done.stdout
    assert "10.0.0.21" in done.stdout


def test_the_double_refuses_what_tmsh_refuses(tmp_path):
    state: dict[str, object] = {"objects": {}, "log": []}
    fake_tmsh.apply(state, "create ltm node /Common/n1 address 10.0.0.1")
    for command in (
        "create ltm node /Common/n1 address 10.0.0.1",
        "modify ltm node /Common/n1 address 10.0.0.2",
        "modify ltm pool /Common/p monitor /Common/m",
        "list ltm pool /Common/p",
    ):
        with pytest.raises(fake_tmsh.Refused):
            fake_tmsh.apply(state, command)
    fake_tmsh.apply(state, "create ltm pool /Common/p members add { /Common/n1:80 }")
    with pytest.raises(fake_tmsh.Refused):
        fake_tmsh.apply(state, "modify ltm pool /Common/p members add { /Common/n1:80 }")


@pytest.mark.parametrize(
    "argv",
    [
        ["--vip", "10.0.0.100:443", "--node", "a=10.0.0.1:80", "--node", "b=10.0.0.2:80/8701"],
        [*BASE, "--tls", "--ca-file", "/c/ca.crt", *TLS_CLIENT],
        ["--vip", "[fd00::100]:443", "--node", "a=[fd00::1]:80", "--node", "b=[fd00::2]:80"],
    ],
    ids=["monitor-per-port", "https-monitor", "ipv6"],
)
def test_every_form_of_the_script_runs_twice(capsys, tmp_path, argv):
    path = script(capsys, tmp_path, *argv)
    bigip = FakeBigIp(tmp_path / "bigip")
    assert bigip.run(path).returncode == 0
    after_one = bigip.objects()
    second = bigip.run(path)
    assert second.returncode == 0, second.stderr
    assert bigip.objects() == after_one
