"""Failover figures: crash (SIGKILL) and graceful (SIGTERM) hand-over times.

Not a test: it prints min, median and p99 over N runs for the embedded store
and for a 3-member etcd. The time is measured from the signal to the first 200
that another node answers on /monitor, polled about every millisecond from
this process over loopback, on connections opened before the signal.

    python bench/failover.py [--runs 20] [--backends local,etcd]
"""

from __future__ import annotations

import argparse
import http.client
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.nodes import Cluster

POLL_LIMIT_S = 30.0


class Poller:
    """GET /monitor on one node over a kept-alive connection, with little CPU of its own.

    http.client costs a fraction of httpx per request; on two cores the poller
    competes with the nodes it measures, so it must be light.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.2)

    def positive(self) -> bool:
        try:
            self.conn.request("GET", "/monitor")
            response = self.conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.2)
            return False

    def close(self) -> None:
        self.conn.close()


def first_positive_elsewhere(pollers: list[Poller], since: float) -> float:
    """Seconds from ``since`` to the first 200 from any of ``pollers``."""
    deadline = since + POLL_LIMIT_S
    while time.monotonic() < deadline:
        for poller in pollers:
            if poller.positive():
                return time.monotonic() - since
        time.sleep(0.0005)
    raise RuntimeError("no new master within the poll limit")


def one_run(cluster: Cluster, sig: signal.Signals) -> float:
    master = cluster.wait_master(timeout=30)
    # Connected before the signal: a connection set-up is not failover time.
    pollers = [Poller(n.port) for n in cluster.nodes if n is not master]
    try:
        for poller in pollers:
            poller.positive()
        t0 = time.monotonic()
        master.signal(sig)
        elapsed = first_positive_elsewhere(pollers, t0)
    finally:
        for poller in pollers:
            poller.close()
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
