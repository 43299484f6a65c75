"""The quorum-loss bound on a real 3-member etcd: every node negative within the TTL.

Three nodes whose first etcd endpoint is the etcd leader, so the master renews
there. Both followers are frozen: the leader has lost its quorum, but etcd
3.4.23 keeps accepting keepalives on it for about 1.7 s. A renewal only counts
once a quorum confirms it, so every node must answer negative within the TTL
of the freeze, and a master must appear again after both members resume. The
verdict is the chaos checker's (its ``quorum`` rule, and the others), from the
probes alone.

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

FROZEN_FOR = TTL + 3.0  # well past the TTL and the ~1.7 s the lone leader keeps renewing
NODE_IDS = ("n1", "n2", "n3")


def test_every_node_is_negative_within_the_ttl_of_losing_the_quorum(tmp_path: Path):
    with EtcdCluster(tmp_path / "etcd", size=3) as etcd:
        lead = etcd.leader_index()
        followers = [m for i, m in enumerate(etcd.members) if i != lead]
        urls = [etcd.member(lead).client_url, *(m.client_url for m in followers)]
        with Cluster(tmp_path, ["--backend", "etcd", "--etcd-endpoints", ",".join(urls)]) as nodes:
            for node_id in NODE_IDS:
                nodes.add(node_id)
            nodes.wait_master(timeout=20)
            time.sleep(2 * TTL)  # the master renews steadily through the etcd leader
            with Prober([(n.node_id, n.url) for n in nodes.nodes], max_seconds=90) as prober:
                time.sleep(1.0)
                t = time.monotonic()
                for member in followers:
                    member.stop()
                try:
                    time.sleep(FROZEN_FOR)
                finally:
                    for member in followers:
                        member.cont()
                healed = time.monotonic()
                nodes.wait_master(timeout=QUORUM_BOUND + 5)
            records = prober.stop()
    lost = Fault(
        "stop 2 etcd members",
        "+".join(m.name for m in followers),
        t,
        healed,
        QUORUM_BOUND,
        quorum_lost=NODE_IDS,
        grace=TTL,
    )
    verdict = check(records, [lost])
    report = verdict.report()
    if not verdict.ok:
        report += "\n" + timeline(records, [lost], verdict.violations[0].at, window=2.5)
    last = max(
        (p.start - t for p in records if p.status == 200 and t <= p.start < healed), default=None
    )
    print(f"last positive {last} s after the freeze (bound {TTL} s)\n{report}")
    assert verdict.ok, report
