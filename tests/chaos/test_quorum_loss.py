"""The quorum-loss bound on a real 3-member etcd: every node negative within the TTL.

Three nodes whose only etcd endpoint is member m0, made the etcd leader, so
the master renews there. Both followers are frozen: m0 has lost its quorum,
but etcd 3.4.23 keeps accepting keepalives on it until it steps down, up to
about 1.7 s later (when exactly varies, so the freeze is repeated
:data:`ROUNDS` times). A renewal only counts once a quorum confirms it, so
every node must answer negative within the TTL of each freeze, and a master
must appear again after both members resume. The verdict is the chaos
checker's (its ``quorum`` rule, and the others), from the probes alone.

Run it on its own with ``pytest -m quorum``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.bounds import QUORUM_BOUND, TTL
from tests.support.checker import Fault, check, timeline
from tests.support.etcd import EtcdCluster
from tests.support.nodes import Cluster
from tests.support.probe import Prober

pytestmark = [pytest.mark.etcd, pytest.mark.slow, pytest.mark.quorum]

ROUNDS = 3
FROZEN_FOR = TTL + 2.0  # past the TTL plus the ~1.7 s the lone leader keeps renewing
NODE_IDS = ("n1", "n2", "n3")


def freeze_followers(etcd: EtcdCluster, nodes: Cluster) -> Fault:
    """Make m0 lead, let the master renew there, freeze the others; the fault."""
    etcd.make_leader(0)
    nodes.wait_master(timeout=QUORUM_BOUND + 5)
    time.sleep(2 * TTL)  # the master renews steadily through m0, the leader
    followers = etcd.members[1:]
    t = time.monotonic()
    for member in followers:
        member.stop()
    try:
        time.sleep(FROZEN_FOR)
    finally:
        for member in followers:
            member.cont()
    names = "+".join(m.name for m in followers)
    return Fault(
        "stop 2 etcd members", names, t, time.monotonic(), QUORUM_BOUND,
        quorum_lost=NODE_IDS, grace=TTL,
    )  # fmt: skip


def test_every_node_is_negative_within_the_ttl_of_losing_the_quorum(tmp_path: Path):
    with EtcdCluster(tmp_path / "etcd", size=3) as etcd:
        args = ["--backend", "etcd", "--etcd-endpoints", etcd.member(0).client_url]
        with Cluster(tmp_path, args) as nodes:
            for node_id in NODE_IDS:
                nodes.add(node_id)
            with Prober([(n.node_id, n.url) for n in nodes.nodes], max_seconds=300) as prober:
                faults = [freeze_followers(etcd, nodes) for _ in range(ROUNDS)]
                nodes.wait_master(timeout=QUORUM_BOUND + 5)
            records = prober.stop()
    verdict = check(records, faults)
    report = verdict.report()
    for fault in faults:
        during = [p.start for p in records if p.status == 200 and fault.injected <= p.start]
        last = max((s for s in during if s < fault.healed), default=fault.injected)
        report += f"\nlast positive {last - fault.injected:.2f} s into the freeze (bound {TTL} s)"
    if not verdict.ok:
        report += "\n" + timeline(records, faults, verdict.violations[0].at, window=2.5)
    print(report)
    assert verdict.ok, report
