"""Failover figures: crash (SIGKILL) and graceful (SIGTERM) hand-over times.

Not a test: it prints min, median and p99 over N runs for the embedded store
and for a 3-member etcd. The time is measured from the signal to the first 200
that another node answers on /monitor, polled every millisecond or so from
this process over loopback.

    python bench/failover.py [--runs 20] [--backends local,etcd]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.nodes import Cluster, Node

POLL_LIMIT_S = 30.0


def first_positive_elsewhere(others: list[Node], since: float) -> float:
    clients = {n.node_id: httpx.Client(base_url=n.url, timeout=0.2) for n in others}
    try:
        deadline = since + POLL_LIMIT_S
        while time.monotonic() < deadline:
            for client in clients.values():
                try:
                    if client.get("/monitor").status_code == 200:
                        return time.monotonic() - since
                except httpx.HTTPError:
                    pass
            time.sleep(0.001)
    finally:
        for client in clients.values():
            client.close()
    raise RuntimeError("no new master within the poll limit")


def one_run(cluster: Cluster, sig: signal.Signals) -> float:
    master = cluster.wait_master(timeout=30)
    others = [n for n in cluster.nodes if n is not master]
    t0 = time.monotonic()
    master.signal(sig)
    elapsed = first_positive_elsewhere(others, t0)
    master.wait(20)
    cluster.nodes.remove(master)
    cluster.add(master.node_id)
    return elapsed


def summary(name: str, samples: list[float]) -> str:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, round(0.99 * (len(s) - 1)))]
    return (
        f"{name:<24} n={len(s):<3} min={s[0] * 1000:7.1f} ms  "
        f"median={statistics.median(s) * 1000:7.1f} ms  p99={p99 * 1000:7.1f} ms"
    )


def bench_backend(backend: str, runs: int, base: Path) -> list[str]:
    etcd = None
    if backend == "etcd":
        from tests.support.etcd import EtcdCluster

        etcd = EtcdCluster()
        etcd.start(3, base / "etcd")
        args = ["--backend", "etcd", "--etcd-endpoints", ",".join(etcd.client_urls)]
    else:
        args = ["--backend", "local", "--state-dir", str(base / "state")]
    lines = []
    try:
        with Cluster(base, args) as cluster:
            for i in (1, 2, 3):
                cluster.add(f"n{i}")
            for label, sig in (
                ("crash (SIGKILL)", signal.SIGKILL),
                ("graceful (SIGTERM)", signal.SIGTERM),
            ):
                samples = [one_run(cluster, sig) for _ in range(runs)]
                lines.append(summary(f"{backend} {label}", samples))
                print(lines[-1], flush=True)
    finally:
        if etcd is not None:
            etcd.stop_all()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", default="local,etcd")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vipmon-bench-") as tmp:
        for backend in args.backends.split(","):
            (Path(tmp) / backend).mkdir()
            bench_backend(backend, args.runs, Path(tmp) / backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
