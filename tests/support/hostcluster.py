"""A cluster built from ``vipmon bootstrap`` in the host world, and its judge.

:func:`cluster` follows the README's "Production in three hosts": bundles
written on the admin host (``lb``), each host's ``install.sh``, the units started,
HAProxy on the VIP, ``vipmon bootstrap auth`` from the admin directory. It yields a
:class:`Cluster` whose :meth:`Cluster.fault` injects one host-level fault on the
master's host or on etcd's leader's host, waits (bounded) for the majority side's
master at ``/monitor`` and at the VIP, heals, and waits for the cluster to be
whole again. Every node's ``/monitor`` is sampled from ``lb`` during the whole run;
at the end the project's checker judges the records against the faults.
"""

from __future__ import annotations

import contextlib
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import Settings
from tests.support.checker import Fault, check
from tests.support.hostworld import HostWorld, bootstrap, running
from tests.support.nodes import wait_for
from tests.support.probe import Prober

TTL = float(Settings.model_fields["lease_ttl"].default)
HEAL_BOUND = 30.0  # a positive answer within this many s after a fault heals
WAIT = 45.0  # the bound of every wait for an event

LAYOUTS: dict[str, tuple[tuple[tuple[str, int], ...], tuple[str, int] | None]] = {
    "three": ((("n1", 1), ("n2", 2), ("n3", 3)), None),
    "witness": ((("n1", 1), ("n2", 2)), ("w", 3)),
}


def assert_bundles_safe(out: Path) -> None:
    """No host bundle holds the CA's key; every key and secret is mode 0600."""
    for bundle in out.iterdir():
        if bundle.name in ("admin", "adc"):
            continue
        assert not (bundle / "ca.key").exists(), f"{bundle.name}: the CA's key"
        for path in bundle.iterdir():
            if path.suffix == ".key" or path.name in ("vipmon.toml", "admin.token"):
                mode = stat.S_IMODE(path.stat().st_mode)
                assert mode & 0o077 == 0, f"{path}: mode {mode:o} lets others read it"
            if path.suffix in (".key", ".crt"):
                text = path.read_bytes()
                assert text != (out / "admin/ca.key").read_bytes(), f"{path}: the CA's key"


@dataclass
class Outcome:
    """One fault: where, and the seconds from injection to the new master."""

    kind: str
    on: str
    host: str
    master_before: str
    master_after: str
    monitor_s: float  # first 200 from the new master at /monitor (or the master kept)
    vip_s: float  # the VIP answers from the majority's master
    etcd_leader: str = ""  # etcd's leader's host when the fault began

    def __str__(self) -> str:
        leader = " (etcd's leader too)" if self.etcd_leader == self.host else ""
        return (
            f"{self.kind:8} on {self.on:11} ({self.host}{leader}): master {self.master_before}"
            f" -> {self.master_after}, /monitor {self.monitor_s:.2f} s, VIP {self.vip_s:.2f} s"
        )


@dataclass
class Cluster:
    world: HostWorld
    prober: Prober
    out: Path
    faults: list[Fault] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def master(self, after: float, among: set[str] | None = None) -> str:
        """The node that answers 200 last among probes begun after ``after`` (bounded)."""
        nodes = among or {bh.name for bh in self.world.nodes}
        found = ""

        def seen() -> bool:
            nonlocal found
            hits = [p for p in list(self.prober.records) if p.start > after and p.status == 200]
            hits = [p for p in hits if p.node in nodes]
            found = max(hits, key=lambda p: p.start).node if hits else ""
            return bool(found)

        wait_for(seen, timeout=WAIT, interval=0.05, what=f"a master among {sorted(nodes)}")
        return found

    def vip_reaches(self, node: str) -> float:
        """Wait until the VIP answers from ``node``; when it first did."""
        wait_for(
            lambda: self.world.vip() == node, timeout=WAIT, interval=0.05, what=f"the VIP at {node}"
        )
        return time.monotonic()

    def together(self, after: float) -> str:
        """Every node answers, one master, every etcd member up with one leader, VIP on it."""
        names = {bh.name for bh in self.world.nodes}

        def whole() -> bool:
            recent = [p for p in list(self.prober.records) if p.start > after]
            answered = {p.node for p in recent if p.status in (200, 503)}
            leader, up = self.world.etcd_status()
            members = {bh.name for bh in self.world.members}
            state[:] = [f"answered {sorted(answered)}, etcd leader {leader!r}, up {sorted(up)}"]
            return answered >= names and bool(leader) and up == members

        state = [""]
        try:
            wait_for(whole, timeout=WAIT, interval=0.2, what="every node and etcd member back")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {state[0]}") from None
        master = self.master(time.monotonic())
        self.vip_reaches(master)
        return master

    def etcd_leader_apart(self, master: str) -> str:
        """etcd's leader's host, moved off the master's host if it was there."""
        leader = self.world.etcd_leader()
        if leader == master:
            others = [bh.name for bh in self.world.members if bh.name != master]
            leader = sorted(others, key=lambda n: n in {bh.name for bh in self.world.nodes})[0]
            self.world.move_etcd_leader(leader)
        return leader

    def fault(self, kind: str, on: str, hold: float = 0.0) -> Outcome:
        """``kind`` on the master's host (``on="master"``) or etcd's leader's host."""
        before = self.master(time.monotonic())
        self.vip_reaches(before)
        host = before if on == "master" else self.etcd_leader_apart(before)
        survivors = {bh.name for bh in self.world.nodes} - {host}
        leader = self.world.etcd_leader()
        t0 = time.monotonic()
        self.world.inject(kind, host)
        try:
            # a master on the faulted host is replaced; else the master of the
            # majority side must hold (or win) its lease past the fault's TTL
            after = t0 if host == before else t0 + TTL + 1.0
            new = self.master(after, survivors)
            first = min(
                p.start
                for p in list(self.prober.records)
                if p.node == new and p.status == 200 and p.start > t0
            )
            vip_at = self.vip_reaches(new)
            if kind == "freeze":
                hold = max(hold, 2 * TTL + 1.0)  # frozen for longer than the TTL
            wait_for(
                lambda: time.monotonic() >= t0 + hold,
                timeout=hold + 1,
                interval=0.1,
                what="the fault's hold",
            )
        finally:
            t1 = time.monotonic()
            self.world.heal(host)
        node = host if host in {bh.name for bh in self.world.nodes} else None
        cut = (node,) if node and kind in ("link", "oneway") else ()
        paused = node if kind == "freeze" else None
        kind_on = f"{kind} {on}"
        self.faults.append(Fault(kind_on, host, t0, t1, HEAL_BOUND, (), cut, TTL, paused))
        self.together(t1)
        outcome = Outcome(kind, on, host, before, new, first - t0, vip_at - t0, leader)
        self.outcomes.append(outcome)
        return outcome

    def verdict_ok(self) -> None:
        verdict = check(list(self.prober.records), self.faults)
        assert verdict.ok, verdict.report()
        assert verdict.positives > 0


@contextlib.contextmanager
def cluster(tmp: Path, layout: str, check_at_end: bool = True) -> Iterator[Cluster]:
    """The README's steps 1-6 in the host world, for ``layout`` (``three``, ``witness``)."""
    hosts, witness = LAYOUTS[layout]
    out = tmp / "prod"
    bootstrap(out, hosts, witness)
    assert_bundles_safe(out)
    names = [name for name, _ in hosts] + ([witness[0]] if witness else [])
    with HostWorld(out, tmp, names) as world:
        world.install_all()
        world.boot_all()
        world.start_lb()
        with running(world) as prober:
            c = Cluster(world, prober, out)
            c.master(0.0)  # elected before auth: etcd asks only for a client certificate
            done = world.admin("bootstrap", "auth", "--out", str(out))
            assert done.returncode == 0, done.stdout + done.stderr
            c.together(time.monotonic())
            yield c
        if check_at_end:
            c.verdict_ok()
