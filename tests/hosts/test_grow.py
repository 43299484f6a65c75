"""Growing and repairing a bootstrapped cluster on real hosts, as the README types it.

``make test-hosts`` (marker ``hosts_matrix``). ``vipmon bootstrap add-host --member``
joins a fourth host (the printed ``etcdctl member add`` first, then its bundle
installed and started); the README's replace-a-dead-host runbook is run as written:
``add-host --replace``, the printed ``etcdctl`` lines (``member list``, ``member
remove <ID>``, ``member add``) through a shell on the admin host, the new machine's
bundle installed and started, and ``vipmon status`` shows the host STANDBY again.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.support.checker import Fault
from tests.support.hostcluster import HEAL_BOUND, Cluster, cluster
from tests.support.hostworld import API_PORT
from tests.support.nodes import wait_for

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux"),
    pytest.mark.etcd,
    pytest.mark.slow,
    pytest.mark.hosts_matrix,
]


def printed_commands(stdout: str) -> list[str]:
    """The ``etcdctl`` commands ``add-host`` printed, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", "", stdout)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("etcdctl ")]


def run_printed(c: Cluster, command: str) -> str:
    """One printed command, typed into a shell on the admin host.

    etcd refuses a reconfiguration ("unhealthy cluster") until every member has been
    connected for 5 s: the operator types it again, as here (bounded).
    """
    for _ in range(15):
        done = c.world.lb.host.run(["sh", "-c", command], timeout=30)
        if done.returncode == 0 or "unhealthy cluster" not in done.stderr:
            break
        time.sleep(1)
    assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    return done.stdout


def standby(c: Cluster, name: str, after: float) -> None:
    def seen() -> bool:
        return any(
            p.node == name and p.status == 503 and "ROLE=STANDBY" in p.body and p.start > after
            for p in list(c.prober.records)
        )

    wait_for(seen, timeout=60, interval=0.1, what=f"{name} STANDBY at /monitor")


def test_add_host_joins_a_fourth_member(tmp_path: Path) -> None:
    with cluster(tmp_path, "three") as c:
        added = c.world.admin(
            "bootstrap", "add-host", "--out", str(c.out), "--host", "n4=10.77.0.4", "--member"
        )
        assert added.returncode == 0, added.stderr
        assert "4 etcd members" in added.stderr  # an even count is warned about
        commands = printed_commands(added.stdout)
        assert len(commands) == 1 and " member add n4 " in commands[0], added.stdout
        assert f"wrote {c.out / 'adc'}/ with n4" in added.stdout
        run_printed(c, commands[0])  # etcd first...
        c.world.reload_lb()  # ...the load balancer with n4...
        n4 = c.world.add("n4", 4)
        n4.install(c.out / "n4")  # ...then the host
        t = time.monotonic()
        n4.boot()
        c.prober.add("n4", f"https://{n4.addr}:{API_PORT}")
        standby(c, "n4", t)
        c.together(time.monotonic())
        assert {bh.name for bh in c.world.members} == {"n1", "n2", "n3", "n4"}
        out = c.fault("poweroff", "master")  # four members still fail over
        assert out.master_after != out.master_before


def test_replace_a_dead_host_runbook_as_written(tmp_path: Path) -> None:
    with cluster(tmp_path, "three") as c:
        master = c.master(time.monotonic())
        dead = c.world[master]
        t0 = time.monotonic()
        dead.poweroff()  # the master's host dies for good
        new = c.master(t0, {bh.name for bh in c.world.nodes} - {master})
        c.vip_reaches(new)
        # a new machine at the same address: an empty disk
        shutil.rmtree(dead.root)
        dead.prepare()
        done = c.world.admin(
            "bootstrap", "add-host", "--out", str(c.out), "--host",
            f"{master}={dead.addr}", "--replace",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        listed, remove, add = printed_commands(done.stdout)
        assert f"<ID of {master}>" in remove, done.stdout
        rows = [r.split(", ") for r in run_printed(c, listed).splitlines()]
        (dead_id,) = [r[0] for r in rows if r[2] == master]
        run_printed(c, remove.replace(f"<ID of {master}>", dead_id))
        run_printed(c, add)
        assert f"wrote {c.out / 'adc'}/ with {master}" in done.stdout
        c.world.reload_lb()
        dead.install(c.out / master)
        t1 = time.monotonic()
        dead.boot()
        standby(c, master, t1)
        status = c.world.admin(
            "status", "--url", f"https://{c.world['n1'].addr}:{API_PORT}",
            "--ca-file", str(c.out / "admin/ca.crt"),
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        row = [line for line in status.stdout.splitlines() if line.split()[:1] == [master]]
        assert row and "STANDBY" in row[0], status.stdout
        c.faults.append(Fault("host replaced", master, t0, t1, HEAL_BOUND))
        c.together(time.monotonic())
