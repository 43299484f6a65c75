"""Clusters from ``vipmon bootstrap`` on real hosts: one host-level fault per layout.

Each test builds its layout from bare hosts in network namespaces as the README's
"Production in three hosts" types it (bundles, ``install.sh``, the units'
``ExecStart`` lines, HAProxy on the VIP, ``bootstrap auth``: TLS and auth on), then
hits the master's host with one fault, judged from the load balancer's namespace:
never two positives (the project's checker), the VIP reaches the majority's master,
and the cluster is whole again after the fault ends. The full matrix of faults is
``tests/hosts/test_matrix.py`` (``make test-hosts``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.support.hostcluster import LAYOUTS, assert_bundles_safe, cluster
from tests.support.hostworld import bootstrap

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux"),
    pytest.mark.etcd,
    pytest.mark.slow,
]


def test_three_hosts_master_host_powered_off(tmp_path: Path) -> None:
    with cluster(tmp_path, "three") as c:
        out = c.fault("poweroff", "master")
        assert out.master_after != out.master_before
        assert out.monitor_s <= out.vip_s  # the VIP follows /monitor, never leads it


def test_two_nodes_and_witness_master_host_frozen(tmp_path: Path) -> None:
    with cluster(tmp_path, "witness") as c:
        out = c.fault("freeze", "master")
        assert out.master_after != out.master_before
        assert out.monitor_s <= out.vip_s


def test_the_bundle_check_fails_on_the_cas_key_or_a_key_others_can_read(tmp_path: Path) -> None:
    hosts, witness = LAYOUTS["witness"]
    out = tmp_path / "prod"
    bootstrap(out, hosts, witness)
    assert_bundles_safe(out)
    shutil.copy(out / "admin/ca.key", out / "w/ca.key")
    with pytest.raises(AssertionError, match="the CA's key"):
        assert_bundles_safe(out)
    (out / "w/ca.key").unlink()
    (out / "n1/api.key").chmod(0o644)
    with pytest.raises(AssertionError, match="lets others read it"):
        assert_bundles_safe(out)
