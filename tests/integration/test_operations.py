"""Day-two operation against a real etcd: admin API, switchover, maintenance, pause,
priorities, drain. Each asserts outcomes and order, never speed."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.etcd import EtcdCluster
from tests.support.nodes import Cluster, Node, wait_for
from tests.support.probe import Prober, violations

pytestmark = pytest.mark.etcd
TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_names = itertools.count()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path_factory.mktemp("etcd-ops"), size=1) as cluster:
        yield cluster


def make_cluster(etcd: EtcdCluster, base: Path, **env: str) -> Cluster:
    args = [
        "--backend",
        "etcd",
        "--etcd-endpoints",
        ",".join(etcd.client_urls),
        "--cluster",
        f"ops{next(_names)}",
    ]
    return Cluster(base, args, env={"VIPMON_ADMIN_TOKEN": TOKEN, **env})


def post(node: Node, path: str, body: dict | None = None, headers=AUTH) -> httpx.Response:
    return httpx.post(node.url + path, json=body or {}, headers=headers, timeout=60)


def prober(cluster: Cluster) -> Prober:
    return Prober([(n.node_id, n.url) for n in cluster.nodes], max_seconds=120)


def wait_members(cluster: Cluster, count: int) -> None:
    def full() -> bool:
        return all(len(n.get("/cluster").json()["members"]) == count for n in cluster.nodes)

    wait_for(full, timeout=15, interval=0.1, what=f"{count} members everywhere")


def test_admin_tokens_and_open_reads(etcd: EtcdCluster, tmp_path: Path):
    with make_cluster(etcd, tmp_path) as c:
        node = c.add("n1")
        c.wait_master()
        assert post(node, "/admin/pause", headers={}).status_code == 401
        assert (
            post(node, "/admin/pause", headers={"Authorization": "Bearer wrong"}).status_code == 403
        )
        r = post(node, "/admin/pause")
        assert r.status_code == 200 and r.json() == {"paused": True}
        assert node.role()["paused"] is True
        assert node.get("/cluster").json()["paused"] is True
        assert "paused=yes" in node.monitor()[1]
        assert post(node, "/admin/resume").json() == {"paused": False}
        assert node.role()["paused"] is False
        assert TOKEN not in node.get("/role").text
        assert TOKEN not in node.log()
        assert f"backend=etcd ({','.join(etcd.client_urls)})" in node.log()  # the start-up line


def test_allow_cidr_refuses_other_networks(etcd: EtcdCluster, tmp_path: Path):
    with make_cluster(etcd, tmp_path) as c:
        node = c.add("n1", ["--allow-cidr", "192.0.2.0/24"])
        r = node.get("/monitor")
        assert r.status_code == 403 and r.json() == {"detail": "client network not allowed"}
        other = c.add("n2", ["--allow-cidr", "192.0.2.0/24", "--allow-cidr", "127.0.0.0/8"])
        assert other.get("/role").status_code == 200


def test_switchover_to_a_named_node_never_shows_two_positives(etcd: EtcdCluster, tmp_path):
    with make_cluster(etcd, tmp_path) as c:
        for i in (1, 2, 3):
            c.add(f"n{i}")
        wait_members(c, 3)
        for _ in range(3):
            old = c.wait_master()
            target = next(n for n in c.nodes if n is not old)
            asked = next(n for n in c.nodes if n is not target)  # any node may take the request
            with prober(c) as p:
                time.sleep(0.2)
                r = post(asked, "/admin/switchover", {"to": target.node_id})
                time.sleep(0.3)
            records = p.stop()
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["from"], body["to"]) == (old.node_id, target.node_id)
            assert body["took_ms"] >= 0
            assert c.wait_master() is target
            assert int(target.role()["term"]) == body["term"]
            assert violations(records) == []


def test_switchover_refusals(etcd: EtcdCluster, tmp_path: Path):
    with make_cluster(etcd, tmp_path) as c:
        c.add("n1")
        c.add("zero", ["--priority", "0"])
        master = c.wait_master()
        wait_members(c, 2)
        for to, words in (
            ("zero", "not eligible"),
            ("ghost", "not alive"),
            (master.node_id, "already the master"),
        ):
            r = post(master, "/admin/switchover", {"to": to})
            assert r.status_code == 409, r.text
            assert words in r.json()["detail"]
        r = post(master, "/admin/switchover", {})
        assert r.status_code == 409 and "no other node is eligible" in r.json()["detail"]
        assert c.wait_master() is master
        post(master, "/admin/pause")
        r = post(master, "/admin/switchover", {"to": "zero"})
        assert r.status_code == 409 and "paused" in r.json()["detail"]


def test_maintenance_on_the_master_hands_over(etcd: EtcdCluster, tmp_path: Path):
    with make_cluster(etcd, tmp_path) as c:
        for i in (1, 2):
            c.add(f"n{i}")
        wait_members(c, 2)
        old = c.wait_master()
        with prober(c) as p:
            r = post(old, "/admin/maintenance", {"enabled": True})
            assert r.status_code == 200, r.text
            new = c.wait_master()
            time.sleep(0.3)
        records = p.stop()
        assert new is not old and r.json()["handed_over_to"] == new.node_id
        status, body = old.monitor()
        assert status == 503 and body.startswith("ROLE=MAINTENANCE ")
        assert violations(records) == []
        # It stays out of the election: kill the new master, nobody takes over.
        new.kill()
        time.sleep(3.5)
        assert not c.masters()
        assert post(old, "/admin/maintenance", {"enabled": False}).status_code == 200
        assert c.wait_master() is old


def test_priority_zero_is_never_master_even_alone(etcd: EtcdCluster, tmp_path: Path):
    with make_cluster(etcd, tmp_path) as c:
        node = c.add("zero", ["--priority", "0"])
        with prober(c) as p:
            wait_for(lambda: node.role()["role"] == "STANDBY", timeout=10, what="a standby")
            time.sleep(3.0)
        records = p.stop()
        assert records and all(r.status == 503 for r in records)
        assert node.role()["eligible"] is False


def test_the_highest_priority_takes_a_free_role(etcd: EtcdCluster, tmp_path: Path):
    with make_cluster(etcd, tmp_path) as c:
        low = c.add("low", ["--priority", "50", "--priority-delay", "1.0"])
        assert c.wait_master() is low
        c.add("mid", ["--priority", "100", "--priority-delay", "1.0"])
        high = c.add("high", ["--priority", "200", "--priority-delay", "1.0"])
        wait_members(c, 3)
        assert c.wait_master() is low  # no automatic failback by default
        low.kill()
        assert c.wait_master(timeout=20) is high


def test_pause_stops_automatic_failover(etcd: EtcdCluster, tmp_path: Path):
    with make_cluster(etcd, tmp_path) as c:
        for i in (1, 2):
            c.add(f"n{i}")
        wait_members(c, 2)
        master = c.wait_master()
        other = next(n for n in c.nodes if n is not master)
        assert post(other, "/admin/pause").status_code == 200
        wait_for(lambda: master.role()["paused"], timeout=5, what="pause seen by the master")
        assert c.wait_master() is master  # the master keeps its role while paused
        master.kill()
        time.sleep(4.0)  # well past TTL + expiry: no automatic failover
        assert not c.masters()
        assert post(other, "/admin/resume").status_code == 200
        assert c.wait_master() is other


def test_drain_is_seen_before_the_new_master_turns_positive(etcd: EtcdCluster, tmp_path):
    with make_cluster(etcd, tmp_path) as c:
        for i in (1, 2):
            c.add(f"n{i}", ["--drain-time", "1.0"])
        wait_members(c, 2)
        old = c.wait_master()
        old_term = int(old.role()["term"])
        with prober(c) as p:
            old.signal(signal.SIGTERM)
            assert old.wait(20) == 0
            new = c.wait_master()
            time.sleep(0.2)
        records = p.stop()
        draining = [r for r in records if r.node == old.node_id and "ROLE=DRAINING" in r.body]
        positives = [r for r in records if r.node == new.node_id and r.status == 200]
        assert draining and positives
        assert all(r.status == 503 for r in draining)
        first_new = min(r.start for r in positives if r.term > old_term)
        assert min(r.end for r in draining) < first_new
        assert violations(records) == []


def test_a_failing_local_check_makes_the_master_hand_over(etcd: EtcdCluster, tmp_path: Path):
    flags = {}
    for name in ("n1", "n2"):
        flag = tmp_path / f"{name}.healthy"
        flag.write_text("ok")
        flags[name] = flag
    check = [
        "--check-interval",
        "0.2",
        "--check-timeout",
        "0.1",
        "--check-rise",
        "1",
        "--check-fall",
        "1",
    ]
    with make_cluster(etcd, tmp_path) as c:
        for name, flag in flags.items():
            c.add(name, ["--check-command", f"test -f {flag}", *check])
        wait_members(c, 2)
        old = c.wait_master()
        with prober(c) as p:
            flags[old.node_id].unlink()
            new = c.wait_master(exclude=old)
            wait_for(lambda: not old.role()["check"]["ok"], timeout=5, what="check failing")
            time.sleep(0.3)
        records = p.stop()
        assert violations(records) == []
        status, body = old.monitor()
        assert status == 503 and "check=failing(command exit 1" in body
        role = old.role()
        assert role["eligible"] is False and role["check"]["detail"].startswith("command exit 1")
        assert new.monitor()[1].startswith("ROLE=MASTER") and "check=ok" in new.monitor()[1]


def test_a_hook_that_hangs_does_not_delay_renewals(etcd: EtcdCluster, tmp_path: Path):
    marker = tmp_path / "hook-ran"
    hang = f"touch {marker}; sleep 60"
    with make_cluster(etcd, tmp_path) as c:
        node = c.add("n1", ["--on-change", hang, "--hook-timeout", "30"])
        c.wait_master()
        wait_for(marker.exists, timeout=10, what="the hook to start")
        before = node.role()
        with prober(c) as p:
            time.sleep(4.0)  # two TTLs with the hook hung the whole time
        records = p.stop()
        after = node.role()
    assert records and all(r.status == 200 for r in records)
    assert after["last_transition"] == before["last_transition"]
    assert after["term"] == before["term"]


def test_metrics_agree_with_monitor(etcd: EtcdCluster, tmp_path: Path):
    with make_cluster(etcd, tmp_path) as c:
        for i in (1, 2):
            c.add(f"n{i}")
        wait_members(c, 2)
        compared = 0
        for _ in range(2):
            master = c.wait_master()
            other = next(n for n in c.nodes if n is not master)
            post(other, "/admin/switchover", {"to": other.node_id})
            for node in c.nodes:
                for _ in range(20):
                    before = node.monitor()[0]
                    text = node.get("/metrics").text
                    after = node.monitor()[0]
                    if before != after:
                        continue  # a transition between the two reads: no instant to compare
                    line = next(x for x in text.splitlines() if x.startswith("vipmon_is_master "))
                    assert float(line.split()[1]) == (1.0 if before == 200 else 0.0), text
                    compared += 1
        assert compared >= 40
        text = c.nodes[0].get("/metrics").text
        assert (
            'vipmon_probes_total{code="200",path="/monitor"}' in text
            or 'vipmon_probes_total{code="503",path="/monitor"}' in text
        )
        assert "vipmon_transitions_total{" in text
        assert "vipmon_renew_latency_seconds_bucket" in text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_switchover_whose_target_dies_mid_way_is_withdrawn(
    etcd: EtcdCluster, tmp_path: Path, sig: signal.Signals
):
    """Issue 20, finding 4: the record blocked everyone else for --switchover-timeout."""
    with make_cluster(etcd, tmp_path) as c:
        for i in (1, 2, 3):
            c.add(f"n{i}", ["--drain-time", "1.0", "--switchover-timeout", "600"])
        wait_members(c, 3)
        old = c.wait_master()
        target, other = (n for n in c.nodes if n is not old)
        answers: list[httpx.Response] = []

        def ask() -> None:
            answers.append(post(old, "/admin/switchover", {"to": target.node_id}))

        with prober(c) as p:
            asking = threading.Thread(target=ask)
            asking.start()
            wait_for(lambda: old.role()["role"] == "DRAINING", timeout=10, what="the drain")
            target.signal(sig)  # the target dies while the master drains
            asking.join(60)
            new = c.wait_master(timeout=30, exclude=target)
            time.sleep(0.2)
        records = p.stop()
        assert not asking.is_alive() and len(answers) == 1
        assert answers[0].status_code == 409, answers[0].text
        assert f"{target.node_id} is gone" in answers[0].json()["detail"]
        assert new in (old, other)
        assert violations(records) == []
