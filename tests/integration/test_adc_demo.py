"""``vipmon demo --duration 8``: a table with a master, exit 0, nothing left running."""

from __future__ import annotations

import os
import re

import pytest

from tests.support.haproxy import run_vipmon


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_demo_runs_bounded_and_stops_what_it_started():
    done = run_vipmon("demo", "--duration", "8", "--refresh", "0.5", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    rows = re.findall(r"^(n[123])\s+(\d+)\s+(\d+)\s+(\w+)\s+(\d+)\s+(\S+)$", out, re.MULTILINE)
    assert {r[0] for r in rows} == {"n1", "n2", "n3"}
    masters = {
        (name, pid) for name, pid, _, role, _, seen in rows if role == "MASTER" and seen == "UP"
    }
    assert masters, "no table showed a master that HAProxy has UP"
    name, pid = sorted(masters)[-1]
    assert re.search(rf"-> {name} \(MASTER\)$", out, re.MULTILINE), "the VIP never reached it"
    assert f"kill -9 {pid}" in out
    stopped = re.search(r"^stopped (\d+) processes \(pids ([\d ]+)\)", out, re.MULTILINE)
    assert stopped and int(stopped.group(1)) == 4  # three nodes and HAProxy
    pids = [int(p) for p in stopped.group(2).split()]
    assert {int(r[1]) for r in rows} <= set(pids)
    assert [p for p in pids if alive(p)] == []
