"""The peer proxy on a real 3-member etcd: every raft connection is judged by its pair,
and cutting the leader off from its peers makes the other two elect a new one while
clients can still reach the old one, which can no longer serve a linearizable read."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.etcd import EtcdCluster
from tests.support.faultproxy import BLACKHOLE, RESET, ProxyHub
from tests.support.nodes import wait_for
from tests.support.peerproxy import PeerNet

pytestmark = pytest.mark.etcd


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[EtcdCluster, PeerNet]]:
    with ProxyHub() as hub:
        net = PeerNet(hub)
        with EtcdCluster(tmp_path, size=3, peer_url=net.add) as etcd:
            net.learn(etcd.member_ids())
            yield etcd, net


def leaders(etcd: EtcdCluster) -> set[str]:
    """Names of the members that report themselves leader."""
    found = set()
    for member in etcd.members:
        st = member.status()
        if st is not None and st.get("leader") == st.get("header", {}).get("member_id"):
            found.add(member.name)
    return found


def linearizable_read_ok(url: str) -> bool:
    """A linearizable range (it needs a quorum) on the member at ``url`` succeeds."""
    try:
        reply = httpx.post(
            url + "/v3/kv/range",
            json={"key": base64.b64encode(b"/peer-cut").decode()},
            headers={"Grpc-Metadata-Hasleader": "true"},
            timeout=2,
        )
    except httpx.HTTPError:
        return False
    return reply.status_code == 200


def test_raft_streams_name_both_ends_in_their_heads(peers):
    etcd, net = peers
    ids = etcd.member_ids()
    streams = {(f, t) for f, t, line in net.seen if line.startswith("GET /raft/stream/")}
    assert streams == {(ids[a], ids[b]) for a, b in itertools.permutations(ids, 2)}


@pytest.mark.parametrize("mode", [BLACKHOLE, RESET])
def test_the_isolated_leader_is_replaced_and_still_serves_clients(peers, mode):
    etcd, net = peers
    old = etcd.member(etcd.leader_index()).name
    net.isolate([old], mode)
    try:
        wait_for(lambda: bool(leaders(etcd) - {old}), timeout=10, interval=0.1, what="a new leader")
        isolated = next(m for m in etcd.members if m.name == old)
        assert httpx.get(isolated.client_url + "/version", timeout=2).status_code == 200
        assert not linearizable_read_ok(isolated.client_url)  # it has no quorum
        new = next(m for m in etcd.members if m.name in leaders(etcd) - {old})
        assert linearizable_read_ok(new.client_url)
    finally:
        net.heal()
    etcd.wait_healthy()
    wait_for(lambda: len(leaders(etcd)) == 1, timeout=10, interval=0.1, what="one leader")
