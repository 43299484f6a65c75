"""The chaos engine: three vipmon nodes, a three-member etcd, faults at random.

Every node's etcd traffic passes through its own :class:`FaultProxy` per etcd
member, so a node can be delayed, cut off, or cut off from one member only.
The members' peer (raft) traffic passes through a :class:`PeerNet` too, so a
member can be cut off from its peers while the nodes still reach it. The
nodes run with a drain time and an admin token, so planned hand-overs
(:mod:`tests.chaos.handover`) are faults too. A :class:`Prober` polls every
node's ``/monitor`` about every 10 ms. Faults are drawn from a seeded
``random.Random`` (the seed is printed first), one at a time, each on the
node that answers positive at that moment (or on the etcd leader), and each
followed by a wait for a master. The verdict comes from
:func:`tests.support.checker.check`, from the probe records and the fault log
alone.

Recovery bounds (:mod:`tests.chaos.bounds`), derived from the settings the
nodes run with (TTL 2 s, margin 0.5 s, renew interval 0.5 s, store timeout
0.5 s per call, three endpoints, drain 0.5 s) and etcd's defaults
(election timeout 1 s, lessor scan 0.5 s, no pre-vote):

* node faults, after the fault heals (or is injected, for kill and term; or
  the switchover reply comes back): TTL 2 + expiry slack 0.5 + watch timeout 1
  (a standby that missed the delete re-campaigns when its watch ends) + up
  to three store calls until one reaches a live endpoint 1.5 + renew interval
  0.5 + backoff cap 1 = 6.5 s (7 s with a SIGTERM's drain); with scheduling slack on
  a 2-core host, **10 s**;
* an etcd member lost (the leader killed or frozen): a new etcd leader within
  2 election timeouts (2 s); etcd then extends every lease, so the node
  faults' figure plus 2 s applies: **12 s**;
* quorum lost (two members frozen), after both resume: the members re-elect
  (up to 3 s: a frozen member comes back with a stale term), then the node
  faults' figure: **15 s**;
* the etcd leader cut off from its peers, after the cut heals: the other two
  have elected a leader meanwhile (2 election timeouts), but the isolated
  member has kept campaigning with ever higher raft terms (no pre-vote), so
  on its return it forces one more election (up to 3 s, as after a lost
  quorum), then the node faults' figure: **15 s**.

Cut off from etcd, a master must stop answering positive within its lease:
**TTL** after the cut (its deadline is the last keepalive's send time + TTL -
margin). The same bound holds for every node that can reach no quorum: two
members frozen, or the isolated leader the only member it can reach (always
when the nodes are pinned to it, else the nodes that sent nothing to the
other members meanwhile). etcd 3.4.23's leader without quorum keeps
accepting keepalives for up to 2 election timeouts, so a renewal must count
only once a linearizable read on the same member, sent after it, confirms it
in the same raft term; the checker's ``quorum`` rule holds every such node
to the TTL.
"""

from __future__ import annotations

import random
import secrets
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tests.chaos.bounds import (
    DRAIN,
    ETCD_MEMBER_BOUND,
    ISOLATED_LEADER_BOUND,
    NODE_BOUND,
    QUORUM_BOUND,
    SWITCHOVER_TIMEOUT,
    TTL,
)
from tests.chaos.handover import HandoverFaults
from tests.support.checker import Fault, Verdict, check, timeline
from tests.support.etcd import EtcdCluster
from tests.support.faultproxy import BLACKHOLE, OPEN, RESET, FaultProxy, ProxyHub
from tests.support.nodes import Cluster, Node
from tests.support.peerproxy import PeerNet
from tests.support.probe import Probe, Prober

NODE_IDS = ("n1", "n2", "n3")
MAX_FAULTS = 10_000


@dataclass
class ChaosResult:
    seed: int
    verdict: Verdict
    records: list[Probe]
    faults: list[Fault]
    base: Path
    kinds: tuple[str, ...] = ()  # every kind the engine draws, for the per-kind tables

    def report(self) -> str:
        """The verdict, and a timeline of the probes around the first violation of each
        episode (violations within 3 s of the one shown before), five at most."""
        lines = [f"seed: {self.seed}", self.verdict.report(self.kinds)]
        shown: list[float] = []
        for v in self.verdict.violations:
            if len(shown) == 5 or (shown and v.at - shown[-1] < 3.0):
                continue
            shown.append(v.at)
            lines += [
                f"\ntimeline around [{v.rule}] at {v.at:.3f} (seed {self.seed}):",
                timeline(self.records, self.faults, v.at),
            ]
        if not self.verdict.ok:
            lines.append(f"\nnode and etcd logs: {self.base}")
        return "\n".join(lines)


class Chaos(HandoverFaults):
    """One chaos run. Use as a context manager: everything it starts is stopped by PID."""

    def __init__(
        self, base: Path, seed: int, duration: float, log: Callable[[str], None] = print
    ) -> None:
        self.base = base
        self.seed = seed
        self.duration = duration
        self.rng = random.Random(seed)
        self.log = log
        self.faults: list[Fault] = []
        self.down: set[str] = set()
        self.admin_token = secrets.token_hex(16)
        self._stack = ExitStack()
        self._t0 = time.monotonic()

    # -- set-up -------------------------------------------------------------

    def __enter__(self) -> Chaos:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        self.hub = ProxyHub()
        self._stack.callback(self.hub.close)
        self.peers = PeerNet(self.hub)
        self.etcd = EtcdCluster(self.base / "etcd", size=3, peer_url=self.peers.add)
        self._stack.callback(self.etcd.stop_all)
        self.etcd.start()
        self.peers.learn(self.etcd.member_ids())
        self.proxies: dict[str, list[FaultProxy]] = {
            node_id: [
                self.hub.add(f"{node_id}->{m.name}", m.client_port) for m in self.etcd.members
            ]
            for node_id in NODE_IDS
        }
        node_args = ["--backend", "etcd", "--drain-time", str(DRAIN)]
        node_args += ["--switchover-timeout", str(SWITCHOVER_TIMEOUT)]
        self.cluster = Cluster(self.base, node_args, env={"VIPMON_ADMIN_TOKEN": self.admin_token})
        self._stack.callback(self.cluster.stop)
        for node_id in NODE_IDS:
            urls = ",".join(p.url for p in self.proxies[node_id])
            self.cluster.add(node_id, ["--etcd-endpoints", urls])
        self.nodes = {n.node_id: n for n in self.cluster.nodes}
        self.prober = Prober(
            [(n.node_id, n.url) for n in self.cluster.nodes],
            interval=0.01,
            max_seconds=self.duration + 300,
        )
        self.prober.start()
        self._stack.callback(self.prober.stop)

    # -- the run ------------------------------------------------------------

    def say(self, text: str) -> None:
        self.log(f"[{time.monotonic() - self._t0:7.2f}] {text}")

    def run(self) -> ChaosResult:
        """Inject faults until ``duration`` s have passed; then judge the probes."""
        self.say(f"chaos: seed {self.seed}, {self.duration:.0f} s, logs in {self.base}")
        end = time.monotonic() + self.duration
        self.wait_master(NODE_BOUND + 10)
        for _ in range(MAX_FAULTS):
            if time.monotonic() >= end:
                break
            fault = self.inject()
            self.faults.append(fault)
            self.say(
                f"{fault.kind} on {fault.target} {fault.detail}: "
                f"held {fault.healed - fault.injected:.2f} s"
            )
            self.wait_master(fault.bound + 5)
            time.sleep(self.rng.uniform(0.5, 1.5))
        records = self.prober.stop()
        verdict = check(records, self.faults)
        kinds = (*self.MASTER_FAULTS, *self.ETCD_FAULTS, "restart node")
        return ChaosResult(self.seed, verdict, records, self.faults, self.base, kinds)

    def wait_master(self, timeout: float) -> Node | None:
        """The one node answering 200, waited for up to ``timeout`` s (None if not found)."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            masters = [n for n in self.live() if n.monitor()[0] == 200]
            if len(masters) == 1:
                return masters[0]
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        self.say(f"no single master within {timeout} s; the checker will judge")
        return None

    def live(self) -> list[Node]:
        return [n for n in self.cluster.nodes if n.node_id not in self.down]

    def inject(self) -> Fault:
        if self.down and self.rng.random() < 0.5:
            return self.restart_node()
        master = self.wait_master(NODE_BOUND)
        kinds = list(self.MASTER_FAULTS if master else ()) + list(self.ETCD_FAULTS)
        if self.down:
            kinds = [k for k in kinds if k not in ("kill master", "term master")]
        kind = self.rng.choice(kinds)
        if kind in self.MASTER_FAULTS:
            assert master is not None
            return getattr(self, self.MASTER_FAULTS[kind])(kind, master)
        return getattr(self, self.ETCD_FAULTS[kind])(kind)

    MASTER_FAULTS = {
        "kill master": "kill_master",
        "term master": "term_master",
        "stop master": "stop_master",
        "partition master": "partition_master",
        "reset master": "partition_master",
        "partition master/1": "partition_one",
        "latency master": "latency_master",
        "switchover": "switchover",
        "switchover, cut in drain": "switchover_cut",
    }
    ETCD_FAULTS = {
        "kill etcd leader": "kill_etcd_leader",
        "stop etcd leader": "stop_etcd_leader",
        "stop 2 etcd members": "stop_two_members",
        "isolate etcd leader": "isolate_etcd_leader",
    }

    def window(
        self, inject: Callable[[], object], heal: Callable[[], object], low: float, high: float
    ) -> tuple[float, float, float]:
        """Inject, hold for U(low, high) s, heal (even on error): (injected, healed, held)."""
        t = time.monotonic()
        inject()
        try:
            held = self.rng.uniform(low, high)
            time.sleep(held)
        finally:
            heal()
        return t, time.monotonic(), held

    # -- node faults ----------------------------------------------------------

    def kill_master(self, kind: str, master: Node) -> Fault:
        t = time.monotonic()
        master.kill()
        self.down.add(master.node_id)
        return Fault(kind, master.node_id, t, t, NODE_BOUND)

    def term_master(self, kind: str, master: Node) -> Fault:
        t = time.monotonic()
        master.signal(signal.SIGTERM)
        self.down.add(master.node_id)
        code = master.wait(4 * TTL + 5)
        return Fault(kind, master.node_id, t, t, NODE_BOUND, detail=f"exit {code}")

    def restart_node(self) -> Fault:
        node_id = self.rng.choice(sorted(self.down))
        t = time.monotonic()
        self.nodes[node_id].start()
        self.down.discard(node_id)
        return Fault("restart node", node_id, t, time.monotonic(), NODE_BOUND)

    def stop_master(self, kind: str, master: Node) -> Fault:
        t, healed, held = self.window(
            lambda: master.signal(signal.SIGSTOP),
            lambda: master.signal(signal.SIGCONT),
            TTL + 0.7,  # etcd deletes the lease by TTL + 0.5 s: the old term is gone
            TTL + 2.5,
        )
        return Fault(
            kind,
            master.node_id,
            t,
            healed,
            NODE_BOUND,
            paused=master.node_id,
            detail=f"{held:.2f} s",
        )

    def partition_master(self, kind: str, master: Node) -> Fault:
        proxies = self.proxies[master.node_id]
        mode = RESET if kind.startswith("reset") else BLACKHOLE
        t, healed, _ = self.window(
            lambda: self.hub.set(proxies, mode), lambda: self.hub.heal(proxies), 1.0, 5.0
        )
        cut = (master.node_id,)
        return Fault(kind, master.node_id, t, healed, NODE_BOUND, cut_off=cut, grace=TTL)

    def partition_one(self, kind: str, master: Node) -> Fault:
        proxies = self.proxies[master.node_id]
        if self.rng.random() < 2 / 3:  # most often the member it talks to now
            proxy = max(proxies, key=lambda p: p.last_activity)
        else:
            proxy = self.rng.choice(proxies)
        t, healed, _ = self.window(
            lambda: self.hub.set([proxy], BLACKHOLE), lambda: self.hub.heal([proxy]), 1.0, 5.0
        )
        return Fault(kind, master.node_id, t, healed, NODE_BOUND, detail=proxy.name)

    def latency_master(self, kind: str, master: Node) -> Fault:
        proxies = self.proxies[master.node_id]
        delay = self.rng.uniform(0.3, 2.0)
        t, healed, _ = self.window(
            lambda: self.hub.set(proxies, OPEN, delay=delay), lambda: self.hub.heal(proxies), 2, 6
        )
        detail = f"+{delay * 1000:.0f} ms"
        return Fault(kind, master.node_id, t, healed, NODE_BOUND, detail=detail)

    # -- etcd faults ----------------------------------------------------------

    def kill_etcd_leader(self, kind: str) -> Fault:
        member = self.etcd.member(self.etcd.leader_index())
        t, healed, _ = self.window(
            member.kill, lambda: member.restart(wait_healthy=False), 1.0, 4.0
        )
        return Fault(kind, member.name, t, healed, ETCD_MEMBER_BOUND)

    def stop_etcd_leader(self, kind: str) -> Fault:
        member = self.etcd.member(self.etcd.leader_index())
        t, healed, _ = self.window(member.stop, member.cont, 1.0, 4.0)
        return Fault(kind, member.name, t, healed, ETCD_MEMBER_BOUND)

    def stop_two_members(self, kind: str) -> Fault:
        members = self.rng.sample(self.etcd.members, 2)
        t, healed, _ = self.window(
            lambda: [m.stop() for m in members], lambda: [m.cont() for m in members], 1.0, 5.0
        )
        names = "+".join(m.name for m in members)
        lost = tuple(n.node_id for n in self.live())
        return Fault(kind, names, t, healed, QUORUM_BOUND, quorum_lost=lost, grace=TTL)

    def isolate_etcd_leader(self, kind: str) -> Fault:
        """The etcd leader cut off from both peers; the nodes can still reach it.

        Half the time every live node is also cut off from the other two
        members ("pinned"): then no node can reach a quorum. Otherwise the
        nodes that sent nothing to the other members while it lasted (by
        their proxies' count) had only the isolated member: the same holds
        for them.
        """
        lead = self.etcd.leader_index()
        member = self.etcd.member(lead)
        mode = self.rng.choice([BLACKHOLE, RESET])
        pinned = self.rng.random() < 0.5
        live = [n.node_id for n in self.live()]
        others = {nid: [p for i, p in enumerate(self.proxies[nid]) if i != lead] for nid in live}
        elsewhere = [p for proxies in others.values() for p in proxies]
        stayed: list[str] = []

        def cut() -> None:
            self.peers.isolate([member.name], mode)
            if pinned:
                self.hub.set(elsewhere, BLACKHOLE)

        def heal() -> None:
            stayed.extend(n for n in live if all(p.last_activity < t for p in others[n]))
            self.peers.heal()
            self.hub.heal(elsewhere)

        t = time.monotonic()
        _, healed, held = self.window(cut, heal, 1.0, 5.0)
        lost = tuple(live if pinned else stayed)
        how = "nodes pinned to it" if pinned else "nodes free"
        detail = f"{mode}, {how}, {held:.2f} s; no quorum for: {','.join(lost) or 'none'}"
        return Fault(
            kind, member.name, t, healed, ISOLATED_LEADER_BOUND,
            quorum_lost=lost, grace=TTL, detail=detail,
        )  # fmt: skip


def run_chaos(
    base: Path, seed: int, duration: float, log: Callable[[str], None] = print
) -> ChaosResult:
    """Set up, run for ``duration`` s, tear down; return the judged result."""
    with Chaos(base, seed, duration, log) as chaos:
        return chaos.run()
