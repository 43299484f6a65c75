"""Three ``vipmon run --backend etcd`` nodes against a real 1-member and 3-member etcd."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration import scenarios
from tests.support.etcd import EtcdCluster
from tests.support.nodes import Cluster, wait_for
from tests.support.probe import Prober, violations

pytestmark = pytest.mark.etcd
_names = itertools.count()


@pytest.fixture(scope="module", params=[1, 3], ids=["etcd1", "etcd3"])
def etcd(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[EtcdCluster]:
    size = request.param
    with EtcdCluster(tmp_path_factory.mktemp(f"etcd{size}"), size=size) as cluster:
        yield cluster


def start_nodes(etcd: EtcdCluster, base: Path, n: int = 3) -> Cluster:
    name = f"c{next(_names)}"
    args = ["--backend", "etcd", "--etcd-endpoints", ",".join(etcd.client_urls), "--cluster", name]
    cluster = Cluster(base, args)
    try:
        for i in range(1, n + 1):
            cluster.add(f"n{i}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture
def nodes(etcd: EtcdCluster, tmp_path: Path) -> Iterator[Cluster]:
    with start_nodes(etcd, tmp_path) as cluster:
        yield cluster


def test_exactly_one_master(nodes: Cluster):
    scenarios.one_master(nodes)


def test_sigkill_failover(nodes: Cluster):
    scenarios.sigkill_failover(nodes)


def test_sigterm_handover(nodes: Cluster):
    scenarios.sigterm_handover(nodes)


def test_sigstop_master_longer_than_ttl(nodes: Cluster):
    scenarios.sigstop_master(nodes, ttl=2)


def test_cluster_lists_every_member(nodes: Cluster):
    master = nodes.wait_master()

    def listed() -> list[str]:
        return sorted(m["id"] for m in nodes.nodes[0].get("/cluster").json()["members"])

    # Member lists refresh about every second: wait for the last node to appear.
    wait_for(lambda: listed() == ["n1", "n2", "n3"], timeout=10, interval=0.1, what="3 members")
    body = nodes.nodes[0].get("/cluster").json()
    assert [m["id"] for m in body["members"] if m["is_master"]] == [master.node_id]


def test_garbage_in_the_leader_key(etcd: EtcdCluster, nodes: Cluster):
    master = nodes.wait_master()
    cluster_name = nodes.backend_args[-1]
    key = f"/vipmon/{cluster_name}/leader"
    with Prober([(n.node_id, n.url) for n in nodes.nodes], max_seconds=60) as prober:
        etcd.put(key, b"\x00\xffnot-json")  # overwrites the master's key, with no lease
        wait_for(lambda: not nodes.masters(), timeout=10, what="every node negative")
        time.sleep(1.0)
        for node in nodes.nodes:
            assert node.alive()
            body = node.role()
            assert body["role"] == "UNKNOWN" and body["leader_unknown"] is True, body
        assert all(n.monitor()[1].startswith("ROLE=UNKNOWN") for n in nodes.nodes)
        # The operator removes the garbage: a master appears again, with a new term.
        url = etcd.client_urls[0] + "/v3/kv/deleterange"
        httpx.post(url, json={"key": base64.b64encode(key.encode()).decode()}, timeout=5)
        new = nodes.wait_master(timeout=20)
    records = prober.stop()
    assert violations(records) == []
    assert new.alive() and master.alive()


@pytest.mark.parametrize("etcd", [3], indirect=True, ids=["etcd3"])
def test_quorum_loss_turns_every_node_negative(etcd: EtcdCluster, tmp_path: Path):
    with start_nodes(etcd, tmp_path) as nodes:
        nodes.wait_master()
        stopped = [m for i, m in enumerate(etcd.members) if i != 0][:2]
        with Prober([(n.node_id, n.url) for n in nodes.nodes], max_seconds=90) as prober:
            for member in stopped:
                member.stop()
            try:
                wait_for(lambda: not nodes.masters(), timeout=15, what="no master anywhere")
                time.sleep(1.0)
                stopped_at = time.monotonic()
                time.sleep(1.5)
                assert not nodes.masters()
                assert all(n.alive() for n in nodes.nodes)
            finally:
                for member in stopped:
                    member.cont()
            nodes.wait_master(timeout=30)
        records = prober.stop()
    assert violations(records) == []
    during = [p for p in records if stopped_at <= p.start and p.end <= stopped_at + 1.5]
    assert during and all(p.status != 200 for p in during)


def _terms(cluster: Cluster) -> list[tuple[str, int | None, str]]:
    """Each node's (id, term, role) as it answers now; a node that does not answer: None."""
    seen = []
    for node in cluster.nodes:
        try:
            role = node.role()
        except (httpx.HTTPError, ValueError):
            seen.append((node.node_id, None, "no answer"))
            continue
        term = role.get("term")
        seen.append((node.node_id, term if isinstance(term, int) else None, str(role.get("role"))))
    return seen


def test_clusters_sharing_one_etcd_keep_their_terms_and_fail_over_alone(tmp_path: Path):
    """Issue 24: four clusters of three nodes on one 3-member etcd. Over a short quiet run
    no cluster changes its term or its master; a crash in one fails that one over, and the
    others keep their terms."""
    with EtcdCluster(tmp_path / "etcd", size=3) as etcd:
        clusters: list[Cluster] = []
        try:
            for i in range(4):
                (tmp_path / f"c{i}").mkdir()
                clusters.append(start_nodes(etcd, tmp_path / f"c{i}"))
            masters = [c.wait_master(timeout=30) for c in clusters]
            terms = [m.role()["term"] for m in masters]
            for _ in range(40):  # about 4 s of polls, every node of every cluster
                for cluster, master, term in zip(clusters, masters, terms, strict=True):
                    seen = _terms(cluster)
                    assert [n for n, _, r in seen if r == "MASTER"] == [master.node_id], seen
                    assert all(t == term for _, t, _ in seen), (term, seen)
                time.sleep(0.1)
            victim, others = clusters[0], clusters[1:]
            masters[0].kill()
            new = victim.wait_master(timeout=30, exclude=masters[0])
            assert new.role()["term"] != terms[0]
            for cluster, master, term in zip(others, masters[1:], terms[1:], strict=True):
                seen = _terms(cluster)
                assert [n for n, _, r in seen if r == "MASTER"] == [master.node_id], seen
                assert all(t == term for _, t, _ in seen), (term, seen)
        finally:
            for cluster in clusters:
                cluster.stop()
