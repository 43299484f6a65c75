"""A real HAProxy, configured by ``vipmon adc-config haproxy``, in front of real nodes.

Each node's ``/role`` stands in for the application, so a request through
the HAProxy frontend says which node it reached. A sampler reads ``show
servers state`` every 20 ms; the assertions are about safety (never two
servers UP, never a standby reached) and the order of events, never speed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import haproxy as hap
from tests.support.etcd import EtcdCluster
from tests.support.nodes import Cluster, Node, wait_for
from tests.support.ports import free_port

ROUNDS = 3


@dataclass(frozen=True)
class Round:
    old: str
    new: str
    began: float  # the signal is sent
    stopped: float  # the old master's process is gone
    ended: float  # the VIP reached the new master


def start_proxy(cluster: Cluster, workdir: Path, *style: str) -> tuple[hap.HAProxy, str]:
    """HAProxy from ``vipmon adc-config haproxy``, seeded so every server starts DOWN."""
    vip = free_port()
    args = [
        "--vip",
        f"127.0.0.1:{vip}",
        "--stats-socket",
        str(workdir / "s.sock"),
        "--state-file",
        str(workdir / "servers.state"),
        *style,
    ]
    for n in cluster.nodes:
        args += ["--node", f"{n.node_id}=127.0.0.1:{n.port}/{n.port}"]
    (workdir / "servers.state").write_text(hap.adc_config("haproxy-state", *args))
    text = hap.adc_config("haproxy", *args)
    return hap.HAProxy(
        workdir, text, "vipmon_nodes", str(workdir / "s.sock")
    ), f"http://127.0.0.1:{vip}"


def reaches(vip_url: str, node: Node) -> bool:
    """A request through the VIP is answered by ``node``, as master."""
    try:
        r = httpx.get(vip_url + "/role", timeout=0.5, headers={"Connection": "close"})
        info = r.json()
    except (httpx.HTTPError, ValueError):
        return False
    return (
        r.status_code == 200 and info.get("node") == node.node_id and info.get("role") == "MASTER"
    )


def failovers(
    cluster: Cluster, proxy: hap.HAProxy, vip_url: str, stop: Callable[[Node], object]
) -> tuple[hap.StateSampler, hap.VipClient, list[Round]]:
    """ROUNDS times: stop the master, wait for the VIP to reach the new one, restart the old."""
    sampler = hap.StateSampler(proxy, interval=0.02).start()
    client = hap.VipClient(vip_url, interval=0.02).start()
    rounds: list[Round] = []
    try:
        for _ in range(ROUNDS):
            old = cluster.wait_master(timeout=30)
            wait_for(
                lambda o=old: sampler.latest() == {o.node_id} and reaches(vip_url, o),
                timeout=20,
                interval=0.05,
                what=f"HAProxy to send the VIP to {old.node_id}",
            )
            began = time.monotonic()
            stop(old)
            stopped = time.monotonic()
            new = cluster.wait_master(timeout=30, exclude=old)
            wait_for(
                lambda n=new: reaches(vip_url, n),
                timeout=20,
                interval=0.05,
                what=f"the VIP to reach the new master {new.node_id}",
            )
            rounds.append(Round(old.node_id, new.node_id, began, stopped, time.monotonic()))
            old.start()
    finally:
        sampler.stop()
        client.stop()
    return sampler, client, rounds


def assert_safe_and_ordered(
    sampler: hap.StateSampler, client: hap.VipClient, rounds: list[Round]
) -> None:
    assert sampler.overlaps() == [], sampler.overlaps()[:5]
    ends = [r.began for r in rounds[1:]] + [float("inf")]
    # The sampler really watched every failover: the old master alone UP, then the new one.
    for r, until in zip(rounds, ends, strict=True):
        seen = [s.up for s in sampler.samples if r.began - 1 <= s.at < until]
        assert frozenset({r.old}) in seen and frozenset({r.new}) in seen, r
    served = client.served()
    assert served, "no request through the VIP was answered"
    assert [a for a in served if a.role == "STANDBY"] == [], "HAProxy sent traffic to a standby"
    for r, until in zip(rounds, ends, strict=True):
        # Answers sent after this round's signal and back before the next round's.
        during = [a for a in served if r.began < a.start and a.end < until]
        # Once the new master has answered, the old one never answers again.
        first_new = next((i for i, a in enumerate(during) if a.node == r.new), None)
        assert first_new is not None, r
        assert all(a.node == r.new and a.role == "MASTER" for a in during[first_new:]), r
        assert all(a.node == r.old for a in during[:first_new]), r
        assert all(a.node == r.new for a in during if a.start > r.stopped), r


@pytest.fixture
def etcd_nodes(tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes on a 3-member etcd."""
    with EtcdCluster(tmp_path / "etcd", size=3) as etcd:
        args = [
            "--backend",
            "etcd",
            "--etcd-endpoints",
            ",".join(etcd.client_urls),
            "--drain-time",
            "1",
        ]
        with Cluster(tmp_path, args) as cluster:
            for i in (1, 2, 3):
                cluster.add(f"n{i}")
            yield cluster


@pytest.mark.etcd
@pytest.mark.slow
def test_haproxy_follows_sigkill_failovers_never_two_up(etcd_nodes: Cluster):
    with hap.short_dir() as d:
        proxy, vip_url = start_proxy(etcd_nodes, d)
        with proxy:
            sampler, client, rounds = failovers(etcd_nodes, proxy, vip_url, Node.kill)
    assert len(rounds) == ROUNDS
    assert_safe_and_ordered(sampler, client, rounds)


@pytest.mark.etcd
@pytest.mark.slow
def test_haproxy_follows_sigterm_handovers_never_two_up(etcd_nodes: Cluster):
    """The drain style: the resigning master answers DRAINING for 1 s and goes NOLB."""

    def handover(node: Node) -> None:
        assert node.terminate() == 0

    with hap.short_dir() as d:
        proxy, vip_url = start_proxy(etcd_nodes, d, "--check", "drain")
        with proxy:
            sampler, client, rounds = failovers(etcd_nodes, proxy, vip_url, handover)
    assert len(rounds) == ROUNDS
    assert_safe_and_ordered(sampler, client, rounds)
    for r in rounds:
        labels = [s.label(r.old) for s in sampler.samples if r.began <= s.at <= r.ended]
        assert "NOLB" in labels, r
        # NOLB (sessions go on, no new ones) came before DOWN, and never went back to UP.
        assert "UP" not in labels[labels.index("NOLB") :], r


TOKEN = "adc-test-token-0123456789"


def admin(node: Node, command: str, body: dict[str, object]) -> dict[str, object]:
    r = httpx.post(
        f"{node.url}/admin/{command}",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.slow
def test_haproxy_agent_check_reads_vipmon_agent(tmp_path: Path):
    """HAProxy applies the agent replies of ``vipmon run --agent-port``: up, down, maint, drain."""
    agents: dict[str, int] = {}
    args = ["--backend", "local", "--state-dir", str(tmp_path / "state"), "--drain-time", "1.5"]
    with Cluster(tmp_path, args, env={"VIPMON_ADMIN_TOKEN": TOKEN}) as c:
        for i in (1, 2, 3):
            agents[f"n{i}"] = free_port()
            c.add(f"n{i}", ["--agent-port", str(agents[f"n{i}"])])
        with hap.short_dir() as d:
            proxy, vip_url = start_proxy(c, d, "--check", "agent", "--agent-port", "8701")
            # All nodes share 127.0.0.1 here, so each server gets its own agent port;
            # HAProxy takes a server line's agent-port over the default-server one.
            text = re.sub(
                r"^(    server (n\d) .*)$",
                lambda m: f"{m.group(1)} agent-port {agents[m.group(2)]}",
                proxy.cfg.read_text(),
                flags=re.MULTILINE,
            )
            proxy.cfg.write_text(text)
            with proxy:
                sampler = hap.StateSampler(proxy).start()
                try:
                    drained = agent_scenario(c, proxy, vip_url, sampler)
                finally:
                    sampler.stop()
    assert sampler.overlaps() == [], sampler.overlaps()[:5]
    assert drained, "the draining master never showed DRAIN"


def agent_scenario(
    c: Cluster, proxy: hap.HAProxy, vip_url: str, sampler: hap.StateSampler
) -> list[hap.StateSample]:
    """Maintenance on and off for a standby, a drained switchover, then a crash."""
    master = c.wait_master(timeout=30)
    wait_for(
        lambda: _agent_view_settled(proxy, c, master),
        timeout=20,
        interval=0.1,
        what="HAProxy to apply every agent reply",
    )
    standby = next(n for n in c.nodes if n is not master)

    def label(node: Node) -> str:
        return proxy.states()[node.node_id].label

    # 'maint' puts the standby in MAINT; back out, 'down ready' leaves it DOWN, never UP.
    admin(standby, "maintenance", {"enabled": True})
    wait_for(lambda: label(standby) == "MAINT", timeout=10, what="MAINT from the agent")
    admin(standby, "maintenance", {"enabled": False})
    wait_for(lambda: label(standby) == "DOWN", timeout=10, what="the standby to leave MAINT")
    assert _agent_view_settled(proxy, c, master)

    # A planned switchover drains the master first: the agent's 'drain'.
    mark = time.monotonic()
    admin(master, "switchover", {"to": standby.node_id})
    wait_for(
        lambda: reaches(vip_url, standby),
        timeout=20,
        interval=0.05,
        what="the VIP to reach the new master",
    )
    drained = [s for s in sampler.samples if s.at > mark and s.label(master.node_id) == "DRAIN"]

    # A crash: HAProxy's HTTP check takes the dead master out; the agent brings no one up early.
    standby.kill()
    new = c.wait_master(timeout=30, exclude=standby)
    wait_for(
        lambda: reaches(vip_url, new),
        timeout=20,
        interval=0.05,
        what="the VIP to reach the master after the crash",
    )
    return drained


def _agent_view_settled(proxy: hap.HAProxy, cluster: Cluster, master: Node) -> bool:
    """The master is UP by its agent's 'up'; every standby is DOWN by its agent's 'down'."""
    stats = proxy.stats()
    for node in cluster.nodes:
        row = stats[node.node_id]
        if node is master:
            if not (row["status"] == "UP" and row["last_agt"] == "via agent : up"):
                return False
        elif not (
            row["status"] == "DOWN (agent)"
            and f"(ROLE=STANDBY node={node.node_id} " in row["last_agt"]
        ):
            return False
    return True
