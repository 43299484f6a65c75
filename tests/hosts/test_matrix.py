"""Every host-level fault, on the master's host and on etcd's leader's host, per layout.

``make test-hosts`` (marker ``hosts_matrix``; ``make test`` leaves it out). In one
cluster per layout, built from ``vipmon bootstrap`` with TLS and auth on, each fault
in turn: the link down, a one-way partition (the other hosts drop what the host
sends), a power-off (SIGKILL to every process of the host; then it boots again), a
freeze (SIGSTOP to all of them, SIGCONT after more than the TTL). For the etcd
leader's faults the leader is first moved off the master's host (``etcdctl
move-leader``; to the witness in that layout) so that the two cases differ. After
each: the majority's master at ``/monitor`` and at the VIP, then the cluster whole
again; at the end the checker over every probe from the load balancer's namespace.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.hostcluster import cluster
from tests.support.hostworld import FAULTS

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux"),
    pytest.mark.etcd,
    pytest.mark.slow,
    pytest.mark.hosts_matrix,
]


@pytest.mark.parametrize("layout", ["three", "witness"])
def test_every_fault_on_the_master_and_the_etcd_leader(tmp_path: Path, layout: str) -> None:
    with cluster(tmp_path, layout) as c:
        for kind in FAULTS:
            for on in ("master", "etcd-leader"):
                out = c.fault(kind, on)
                if on == "master":
                    assert out.master_after != out.master_before, out
                else:
                    assert out.host != out.master_before, out
                assert out.monitor_s <= out.vip_s, out
        for outcome in c.outcomes:
            print(layout, outcome)
