"""HAProxy's fast timer profile in front of three real nodes on the embedded store.

The profile: ``inter 0.2s fastinter 0.25s downinter 0.2s rise 2 fall 1``,
``timeout check 0.15s``, ``timeout connect 0.2s``. Its config comes from
:func:`fast_proxy` only. HAProxy's ``show servers state`` is sampled every
10 ms and every node's ``/monitor`` probed every 10 ms for the whole test;
the assertions are about safety (never two servers UP, never two positive
nodes) and the order of events, never speed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_adc_haproxy import TOKEN, admin, reaches, start_proxy
from tests.support import haproxy as hap
from tests.support.nodes import Cluster, Node, wait_for
from tests.support.probe import Prober, positive_terms, violations

# Interleaved, so each kind follows the other.
EVENTS = ("switchover", "crash") * 3
SWITCHOVERS = 4


def fast_proxy(cluster: Cluster, workdir: Path) -> tuple[hap.HAProxy, str]:
    """HAProxy with ``adc-config haproxy --profile fast``, every server seeded DOWN;
    and the VIP's URL."""
    return start_proxy(cluster, workdir, "--profile", "fast", "--lease-ttl", "2")


@dataclass(frozen=True)
class Round:
    kind: str
    old: str
    new: str
    began: float  # just before the kill or the switchover request
    ended: float  # HAProxy showed the new master alone UP


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes sharing one embedded store, with an admin token.

    Shared by the module's tests (starting three nodes takes seconds); each
    test starts its own HAProxy and waits for one master before it begins,
    and every crash restarts the node it killed.
    """
    base = tmp_path_factory.mktemp("fast")
    args = ["--backend", "local", "--state-dir", str(base / "state"), "--lease-ttl", "2"]
    with Cluster(base, args, env={"VIPMON_ADMIN_TOKEN": TOKEN}) as cluster:
        cluster.add_all(["n1", "n2", "n3"])
        yield cluster


def alone_up(sampler: hap.StateSampler, node: Node) -> None:
    wait_for(
        lambda: sampler.latest() == {node.node_id},
        timeout=15,
        interval=0.01,
        what=f"HAProxy to hold {node.node_id} alone UP",
    )


def settled(cluster: Cluster, sampler: hap.StateSampler) -> Node:
    """The one master, once HAProxy holds it alone UP."""
    master = cluster.wait_master(timeout=20)
    alone_up(sampler, master)
    return master


def crash(cluster: Cluster, sampler: hap.StateSampler) -> Round:
    """SIGKILL the master; once HAProxy holds the new one alone UP, restart the old."""
    old = settled(cluster, sampler)
    began = time.monotonic()
    old.kill()
    new = cluster.wait_master(timeout=20, exclude=old)
    alone_up(sampler, new)
    ended = time.monotonic()
    old.start()
    return Round("crash", old.node_id, new.node_id, began, ended)


def switchover(cluster: Cluster, sampler: hap.StateSampler, to: str | None = None) -> Round:
    """``POST /admin/switchover`` to the master (to ``to``, or to the best candidate)."""
    old = settled(cluster, sampler)
    began = time.monotonic()
    done = admin(old, "switchover", {} if to is None else {"to": to})
    new = next(n for n in cluster.nodes if n.node_id == done["to"])
    alone_up(sampler, new)
    return Round("switchover", old.node_id, new.node_id, began, time.monotonic())


def assert_ordered(samples: Sequence[hap.StateSample], r: Round) -> None:
    """Within the round: the old master alone UP, then nobody, then the new one alone."""
    before = [s for s in samples if s.at < r.began]
    during = [s.up for s in samples if r.began <= s.at <= r.ended]
    seen = [before[-1].up, *during]
    phases = [up for i, up in enumerate(seen) if i == 0 or up != seen[i - 1]]
    assert phases[0] == {r.old} and phases[-1] == {r.new}, (r, phases)
    assert all(up == frozenset() for up in phases[1:-1]), (r, phases)


@pytest.mark.slow
def test_fast_profile_never_two_up_across_crashes_and_switchovers(nodes: Cluster):
    with hap.short_dir() as d:
        proxy, _ = fast_proxy(nodes, d)
        with proxy, Prober([(n.node_id, n.url) for n in nodes.nodes]) as prober:
            sampler = hap.StateSampler(proxy, interval=0.01, max_seconds=120).start()
            try:
                rounds = [
                    crash(nodes, sampler) if kind == "crash" else switchover(nodes, sampler)
                    for kind in EVENTS
                ]
            finally:
                sampler.stop()
            records = prober.stop()
    assert sampler.overlaps() == [], sampler.overlaps()[:5]
    assert violations(records) == [], violations(records)[:5]
    for r in rounds:
        assert_ordered(sampler.samples, r)
    # Every round's new master was seen positive by the node-side prober, in a new term.
    assert len(positive_terms(records)) >= len(EVENTS) + 1
    print(f"{len(sampler.samples)} HAProxy samples ({sampler.errors} failed reads)")
    print([(r.kind, round(r.ended - r.began, 2)) for r in rounds])


@pytest.mark.slow
def test_every_switchover_under_load_reaches_the_new_master_through_the_vip(nodes: Cluster):
    with hap.short_dir() as d:
        proxy, vip_url = fast_proxy(nodes, d)
        with proxy:
            sampler = hap.StateSampler(proxy, interval=0.01, max_seconds=60).start()
            clients = [
                hap.VipClient(vip_url, interval=0.01, max_seconds=60, keep_alive=k).start()
                for k in (False, True)
            ]
            try:
                rounds = load_switchovers(nodes, sampler, vip_url, clients)
            finally:
                for c in clients:
                    c.stop()
                sampler.stop()
    assert sampler.overlaps() == [], sampler.overlaps()[:5]
    ends = [r.began for r in rounds[1:]] + [float("inf")]
    for r, until in zip(rounds, ends, strict=True):
        assert_ordered(sampler.samples, r)
        # The first sample holding the new master alone UP: the old one was DOWN by then.
        mark = next(s.at for s in sampler.samples if s.at > r.began and s.up == {r.new})
        for c in clients:
            later = [a for a in c.served() if mark < a.start and a.end < until]
            assert later, r
            assert all(a.node == r.new and a.role == "MASTER" for a in later), (r, later[:5])
    for i, (r, until) in enumerate(zip(rounds, ends, strict=True)):
        failed = [
            [a for a in c.answers if r.began <= a.start < until and a.status != 200]
            for c in clients
        ]
        print(
            f"switchover {i + 1} {r.old}->{r.new}: failed requests "
            f"new-connection {len(failed[0])}, kept-alive {len(failed[1])}"
        )


def load_switchovers(
    cluster: Cluster, sampler: hap.StateSampler, vip_url: str, clients: list[hap.VipClient]
) -> list[Round]:
    """SWITCHOVERS times, each to a named node: wait until the VIP reaches it, by every client."""
    rounds: list[Round] = []
    for _ in range(SWITCHOVERS):
        master = settled(cluster, sampler)
        target = cluster.nodes[(cluster.nodes.index(master) + 1) % len(cluster.nodes)]
        r = switchover(cluster, sampler, to=target.node_id)
        wait_for(
            lambda t=target, b=r.ended: (
                reaches(vip_url, t)
                and all(
                    any(a.node == t.node_id and a.start > b for a in c.served()) for c in clients
                )
            ),
            timeout=10,
            interval=0.02,
            what=f"every client to reach the new master {target.node_id} through the VIP",
        )
        rounds.append(r)
    return rounds
