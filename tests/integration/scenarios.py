"""Failover scenarios shared by every backend. Each asserts safety and order, never speed.

``cluster`` is a :class:`tests.support.nodes.Cluster` with three nodes started.
"""

from __future__ import annotations

import signal
import time

from tests.support.nodes import Cluster, wait_for
from tests.support.probe import Prober, positive_terms, violations


def prober_for(cluster: Cluster) -> Prober:
    return Prober([(n.node_id, n.url) for n in cluster.nodes], interval=0.01, max_seconds=120)


def one_master(cluster: Cluster) -> None:
    master = cluster.wait_master()
    # Hold the observation a little: the answer stays one master.
    with prober_for(cluster) as prober:
        time.sleep(1.0)
    records = prober.stop()
    assert violations(records) == []
    assert set(positive_terms(records).values()) == {master.node_id}
    roles = {n.node_id: n.role() for n in cluster.nodes}
    terms = {r["term"] for r in roles.values()}
    assert len(terms) == 1, roles
    for node_id, r in roles.items():
        expected = "MASTER" if node_id == master.node_id else "STANDBY"
        assert r["role"] == expected, roles
        assert r["leader"]["id"] == master.node_id


def sigkill_failover(cluster: Cluster) -> None:
    old = cluster.wait_master()
    old_term = int(old.role()["term"])
    with prober_for(cluster) as prober:
        prober.wait_positive(old.node_id)
        old.kill()
        killed_at = time.monotonic()
        new = cluster.wait_master(exclude=old)
        prober.wait_positive(new.node_id, after=killed_at)
    records = prober.stop()
    assert new is not old
    assert violations(records) == []
    after = [p for p in records if p.start > killed_at and p.status == 200]
    assert after, "no positive after the kill"
    assert all(p.term > old_term and p.node != old.node_id for p in after)


def sigterm_handover(cluster: Cluster) -> None:
    old = cluster.wait_master()
    old_term = int(old.role()["term"])
    with prober_for(cluster) as prober:
        prober.wait_positive(old.node_id)
        old.signal(signal.SIGTERM)
        assert old.wait(20) == 0
        stopped_at = time.monotonic()
        new = cluster.wait_master(exclude=old)
        prober.wait_positive(new.node_id, after=stopped_at)
    records = prober.stop()
    assert violations(records) == []
    # Order: the old master's last positive ended before the new one's first began.
    old_pos = [p for p in records if p.node == old.node_id and p.status == 200]
    new_pos = [p for p in records if p.node == new.node_id and p.status == 200]
    assert old_pos and new_pos
    assert min(p.term for p in new_pos) > old_term
    assert all(p.start < stopped_at for p in old_pos)


def sigstop_master(cluster: Cluster, ttl: float) -> None:
    old = cluster.wait_master()
    old_term = int(old.role()["term"])
    with prober_for(cluster) as prober:
        old.signal(signal.SIGSTOP)
        try:
            new = cluster.wait_master(exclude=old)
            time.sleep(ttl + 0.5)
        finally:
            old.signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_for(lambda: old.monitor()[0] == 503, timeout=10, what="old master to answer")
        time.sleep(1.0)
    records = prober.stop()
    assert new is not old
    assert violations(records) == []
    stale = [
        p
        for p in records
        if p.node == old.node_id and p.term == old_term and p.status == 200 and p.end > resumed_at
    ]
    assert stale == [], stale[:3]
    first_after = next(
        p for p in records if p.node == old.node_id and p.start > resumed_at and p.status != 0
    )
    assert first_after.status == 503, first_after
