"""`vipmon status` against real nodes: each row is what that node says about itself now.

Every test runs ``app.cli.main(["status", ...])`` (or ``python -m app status --watch`` as a
child process) and checks the rows, the cluster line and the exit status. Each wait is a
bounded poll of a state; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from tests.support.etcd import EtcdCluster
from tests.support.nodes import REPO, Cluster, Node, wait_for
from tests.support.ports import free_port

TOKEN = "operator-token-0123456789abcdef"
PAUSED = "the cluster is paused (automatic failover is off until `vipmon resume`)"


def status(capsys: pytest.CaptureFixture[str], *urls: str) -> tuple[int, list[list[str]], str]:
    """``vipmon status`` on ``urls``: (exit status, rows split on blanks, the cluster line)."""
    argv = ["status", "--timeout", "2"]
    for url in urls:
        argv += ["--url", url]
    code = main(argv)
    out = capsys.readouterr().out
    if code == 1:
        return code, [], ""
    table, line = out.split("\n\n")[:2]
    return code, [row.split() for row in table.splitlines()[1:]], line.splitlines()[0]


def row_of(rows: list[list[str]], url: str) -> list[str]:
    [row] = [r for r in rows if r[8] == url]
    return row


def listed_everywhere(cluster: Cluster, count: int) -> None:
    """Wait until every live node's /cluster lists ``count`` members."""

    def full() -> bool:
        live = [n for n in cluster.nodes if n.alive()]
        return all(len(n.get("/cluster").json()["members"]) == count for n in live)

    wait_for(full, timeout=15, interval=0.05, what=f"{count} members listed everywhere")


def admin(tmp_path: Path, *argv: str) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    assert main([*argv, "--token-file", str(token)]) == 0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    args = ["--backend", "local", "--state-dir", str(tmp_path / "state")]
    with Cluster(tmp_path, args, env={"VIPMON_ADMIN_TOKEN": TOKEN}) as c:
        c.add_all(["n1", "n2", "n3"])
        c.wait_master()
        listed_everywhere(c, 3)
        yield c


def test_a_healthy_cluster_has_exactly_one_master_row(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
):
    master = cluster.wait_master()
    dead_seed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the next seed lists them
    code, rows, line = status(capsys, dead_seed, cluster.nodes[0].url)
    assert code == 0, rows
    assert [r[1] for r in rows].count("MASTER") == 1
    assert row_of(rows, master.url)[:2] == [master.node_id, "MASTER"]
    assert line == f"master: {master.node_id} (term {master.role()['term']})"
    assert sorted(r[0] for r in rows if r[1] != "UNREACHABLE") == ["n1", "n2", "n3"]
    assert row_of(rows, dead_seed)[:2] == ["?", "UNREACHABLE"]


def test_a_node_in_maintenance_shows_maintenance(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    master = cluster.wait_master()
    standby = next(n for n in cluster.nodes if n is not master)
    admin(tmp_path, "maintenance", "on", "--url", standby.url)
    wait_for(lambda: standby.role()["role"] == "MAINTENANCE", timeout=10, what="maintenance")
    code, rows, _ = status(capsys, master.url)
    assert code == 0
    row = row_of(rows, standby.url)
    assert row[:2] == [standby.node_id, "MAINTENANCE"] and row[5] == "yes"


def test_a_master_just_killed_is_unreachable_never_master(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
):
    old = cluster.wait_master()
    survivor = next(n for n in cluster.nodes if n is not old)
    old_term = int(old.role()["term"])
    old.kill()  # SIGKILL, reaped
    codes: list[int] = []
    seen: list[tuple[list[list[str]], str]] = []

    def new_master() -> bool:
        code, rows, line = status(capsys, old.url, survivor.url)
        codes.append(code)
        seen.append((rows, line))
        return code != 3

    wait_for(new_master, timeout=20, interval=0.05, what="status to show a new master")
    # No master until the new one, never a split; then a master, but the dead one is
    # still a member (not healthy: exit 5), first UNREACHABLE, then missing.
    assert set(codes[:-1]) <= {3} and codes[-1] == 5, codes
    for rows, _ in seen:
        assert row_of(rows, old.url)[1] == "UNREACHABLE"
        assert [r for r in rows if r[0] == old.node_id and r[1] == "MASTER"] == []
    for rows, line in seen[:-1]:
        assert "MASTER" not in [r[1] for r in rows] and line.startswith("no master: ")
    rows, line = seen[-1]
    [master] = [r for r in rows if r[1] == "MASTER"]
    assert master[0] != old.node_id and int(master[2]) > old_term
    assert line.startswith(f"master: {master[0]} (term {master[2]}), but {old.node_id} is ")
    assert row_of(rows, old.url)[0] == old.node_id  # listed by its id, not as a bare seed

    def missing() -> bool:
        code, _, line = status(capsys, survivor.url)
        return code == 5 and f"but {old.node_id} is missing (no member record since " in line

    wait_for(missing, timeout=15, interval=0.1, what="status to call the dead master missing")


def test_paused_with_its_master_killed_says_paused(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    master = cluster.wait_master()
    others = [n for n in cluster.nodes if n is not master]
    admin(tmp_path, "pause", "--url", others[0].url)
    wait_for(lambda: all(n.role()["paused"] for n in cluster.nodes), timeout=10, what="pause")
    master.kill()
    code, rows, line = status(capsys, *(n.url for n in cluster.nodes))
    assert code == 3 and "MASTER" not in [r[1] for r in rows]
    assert line.startswith("no master: ") and PAUSED in line
    # Once the dead master's lease has run out nobody takes over: paused is the reason.
    wait_for(
        lambda: all(n.role()["leader"] is None for n in others), timeout=15, what="key expired"
    )
    code, rows, line = status(capsys, *(n.url for n in cluster.nodes))
    assert code == 3 and line == f"no master: {PAUSED}"
    assert {r[1] for r in rows if r[8] != master.url} == {"STANDBY"}


@pytest.mark.etcd
def test_etcd_frozen_every_node_unknown_blames_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with EtcdCluster(tmp_path / "etcd", size=1) as etcd:
        args = ["--backend", "etcd", "--etcd-endpoints", ",".join(etcd.client_urls)]
        with Cluster(tmp_path, args) as c:
            c.add_all(["e1", "e2", "e3"])
            c.wait_master()
            listed_everywhere(c, 3)
            for member in etcd.members:
                member.stop()
            try:

                def all_unknown() -> bool:
                    roles = [n.role() for n in c.nodes]
                    return all(
                        r["role"] == "UNKNOWN" and not r["backend"]["reachable"] for r in roles
                    )

                wait_for(all_unknown, timeout=20, interval=0.1, what="every node UNKNOWN")
                code, rows, line = status(capsys, c.nodes[0].url)
            finally:
                for member in etcd.members:
                    member.cont()
    assert code == 3
    assert sorted(r[0] for r in rows) == ["e1", "e2", "e3"]
    assert {r[1] for r in rows} == {"UNKNOWN"} and {r[4] for r in rows} == {"unreachable"}
    assert line == (
        "no master: the store is unreachable from every node that answered "
        "(etcd quorum lost or etcd down)"
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell may start us with SIGINT ignored


def test_watch_redraws_until_sigint_and_exits_with_the_frame_status(tmp_path: Path):
    with Cluster(tmp_path, ["--state-dir", str(tmp_path / "state")]) as c:
        node: Node = c.add("solo", ["--priority", "0"])
        wait_for(lambda: node.role()["role"] == "STANDBY", timeout=10, what="a standby")
        line = "no master: no eligible node (solo priority 0)"
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "status", "--watch", "--url", node.url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_default_sigint,
        )
        try:
            assert proc.stdout is not None and proc.stderr is not None
            out = b""
            deadline = time.monotonic() + 30
            for _ in range(3000):
                if out.count(line.encode()) >= 2 or time.monotonic() > deadline:
                    break
                ready, _, _ = select.select([proc.stdout], [], [], 0.1)
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    assert chunk, f"status --watch ended early: {proc.wait(5)}"
                    out += chunk
            text = out.decode()
            assert text.count(line) >= 2, text
            assert text.count("vipmon status --watch: ") >= 2
            os.kill(proc.pid, signal.SIGINT)
            assert proc.wait(10) == 3
            err = proc.stderr.read().decode()
            assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_two_processes_with_one_node_id_show_as_two_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Issue 20, finding 12: one row, exit 0, hid a second process with the same --node-id."""
    args = ["--backend", "local", "--state-dir", str(tmp_path / "state")]
    with Cluster(tmp_path, args) as c:
        first = c.add("n1")
        c.add("n2")
        assert c.wait_master() is first
        second = Node("n1", free_port(), list(args), tmp_path / "n1-second.log")
        c.nodes.append(second)  # stopped with the others, by PID
        second.start()
        wait_for(lambda: second.role()["eligible"] is False, timeout=10, what="id in use")
        code, rows, line = status(capsys, first.url, second.url)
    assert code == 5, (rows, line)
    assert sorted(r[8] for r in rows if r[0] == "n1") == sorted([first.url, second.url])
    assert line.startswith("master: n1 (term ") and "node id n1 answers from 2 processes" in line


def test_a_crashed_member_stays_listed_as_missing_until_forgotten(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Issue 20, finding 10: a crashed node vanished from status about a TTL after the
    crash (its member record went with its lease), and status exited 0."""
    master = cluster.wait_master()
    gone = next(n for n in cluster.nodes if n is not master)
    gone.kill()
    wait_for(
        lambda: all(
            [m["id"] for m in n.get("/cluster").json()["members"]]
            == sorted(x.node_id for x in cluster.nodes if x is not gone)
            for n in cluster.nodes
            if n.alive()
        ),
        timeout=15,
        what="the dead member's record to expire everywhere",
    )

    def listed_missing(node: Node) -> bool:
        missing = node.get("/cluster").json().get("missing", [])
        return [(m["id"], m["url"]) for m in missing] == [(gone.node_id, gone.url)] and all(
            m["missing_since"] for m in missing
        )

    wait_for(lambda: listed_missing(master), timeout=15, what="the master to mark it missing")
    code, rows, line = status(capsys, master.url)
    assert code == 5, (rows, line)
    [row] = [r for r in rows if r[0] == gone.node_id]
    assert row[1] == "UNREACHABLE" and row[8] == gone.url
    assert "missing since" in " ".join(row[9:])
    assert line.startswith(f"master: {master.node_id} (term ")
    assert f"but {gone.node_id} is missing" in line

    # A node started after the crash knows about it too.
    late = cluster.add("n4")
    wait_for(lambda: listed_missing(late), timeout=15, what="a new node to list it missing")

    # Forgetting a live member is refused; forgetting the dead one ends it.
    token = tmp_path / "token"
    token.write_text(TOKEN)
    alive = ["member", "forget", master.node_id, "--url", master.url, "--token-file", str(token)]
    assert main(alive) == 1
    assert "is alive" in capsys.readouterr().err
    admin(tmp_path, "member", "forget", gone.node_id, "--url", late.url)
    wait_for(
        lambda: all(n.get("/cluster").json()["missing"] == [] for n in cluster.nodes if n.alive()),
        timeout=15,
        what="every node to forget it",
    )
    code, rows, line = status(capsys, master.url)
    assert code == 0 and gone.node_id not in [r[0] for r in rows], (rows, line)
