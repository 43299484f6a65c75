"""A planned switchover, commit by commit: where its time goes at the nodes.

Not a test (and not in ``make test``): it prints figures. For each backend, three
``vipmon run`` nodes (TTL 2 s, no drain, the default 10 ms settle time) and ``--runs``
switchovers, each ``POST /admin/switchover`` to the master naming the next node. On
etcd (3 members on loopback) a watch of the cluster's keys, opened by this process,
times each write as it arrives here:

* **record**: the switchover record's put (after its lease's grant);
* **delete**: the old master's key's delete;
* **acquire**: the target's put of the leader key (its new term);
* **positive**: the target's first 200 on ``/monitor``, polled over a kept-alive
  connection about every millisecond.

Each step is printed as the median (and worst) time from the step before it; ``total``
is the request's send to the target's first 200, and ``took_ms`` what the node itself
reports in its reply. Every wait is bounded; processes are stopped by PID; traffic
stays on 127.0.0.1.

    .venv/bin/python bench/switchover.py --runs 20 --backends etcd,local
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.etcd import EtcdCluster
from tests.support.nodes import Cluster, wait_for

TOKEN = "bench-switchover-token-0123456789"
CLUSTER = "sw"
STEPS = ("record", "delete", "acquire", "positive")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Watch(threading.Thread):
    """Every event under the cluster's prefix, with its arrival time on this clock."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[tuple[float, str, str]] = []  # (arrived, "PUT"/"DELETE", key)
        self.ready = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # etcd stopped at the end of the run
            self._watch()

    def _watch(self) -> None:
        prefix = f"/vipmon/{CLUSTER}/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = {"create_request": {"key": b64(prefix), "range_end": b64(end)}}
        with (
            httpx.Client(timeout=httpx.Timeout(5, read=None)) as client,
            client.stream("POST", self.url + "/v3/watch", json=body) as reply,
        ):
            for line in reply.iter_lines():
                arrived = time.monotonic()
                result = json.loads(line).get("result", {})
                if result.get("created"):
                    self.ready.set()
                for event in result.get("events", []):
                    key = base64.b64decode(event["kv"]["key"]).decode()
                    with self._lock:
                        self.events.append((arrived, event.get("type", "PUT"), key))

    def since(self, t0: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [e for e in self.events if e[0] >= t0]


def positive(conn: http.client.HTTPConnection) -> bool:
    conn.request("GET", "/monitor")
    reply = conn.getresponse()
    reply.read()
    return reply.status == 200


def one_switchover(cluster: Cluster, watch: Watch | None) -> dict[str, float]:
    """One switchover from the master to the next node; the times of its steps."""
    old = cluster.wait_master(timeout=30)
    target = cluster.nodes[(cluster.nodes.index(old) + 1) % len(cluster.nodes)]
    poll = http.client.HTTPConnection("127.0.0.1", target.port, timeout=2)
    conn = http.client.HTTPConnection("127.0.0.1", old.port, timeout=40)
    poll.connect()
    conn.connect()  # before the clock starts
    time.sleep(0.3)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    t0 = time.monotonic()
    conn.request(
        "POST", "/admin/switchover", body=json.dumps({"to": target.node_id}), headers=headers
    )
    seen = None
    for _ in range(30_000):  # about 30 s at most
        if positive(poll):
            seen = time.monotonic()
            break
        time.sleep(0.001)
    reply = conn.getresponse()
    text = reply.read()
    conn.close()
    poll.close()
    if reply.status != 200 or seen is None:
        raise RuntimeError(f"switchover: HTTP {reply.status} {text[:300]!r}, positive {seen}")
    times = {"positive": seen - t0, "took_ms": json.loads(text)["took_ms"] / 1000}
    if watch is not None:
        leader = f"/vipmon/{CLUSTER}/leader"
        record = f"/vipmon/{CLUSTER}/control/switchover"
        wait_for(
            lambda: any(k == leader and t == "PUT" for _, t, k in watch.since(t0)),
            timeout=5,
            what="the new term's put on the watch",
        )
        events = watch.since(t0)
        firsts = {
            "record": next(a for a, t, k in events if k == record and t == "PUT"),
            "delete": next(a for a, t, k in events if k == leader and t == "DELETE"),
            "acquire": next(a for a, t, k in events if k == leader and t == "PUT"),
        }
        times.update({step: at - t0 for step, at in firsts.items()})
    return times


def report(label: str, runs: list[dict[str, float]]) -> None:
    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.1f} ms (worst {max(values) * 1000:.1f})"

    print(f"{label}: {len(runs)} switchovers")
    if "record" in runs[0]:
        prev = [0.0] * len(runs)
        for step in STEPS:
            gaps = [r[step] - p for r, p in zip(runs, prev, strict=True)]
            print(f"  {step:9s} +{ms(gaps)}")
            prev = [r[step] for r in runs]
    print(f"  total      {ms([r['positive'] for r in runs])}")
    print(f"  took_ms    {ms([r['took_ms'] for r in runs])}")


def run(base: Path, backend: list[str], runs: int, watch_url: str | None) -> list[dict[str, float]]:
    args = [*backend, "--cluster", CLUSTER, "--lease-ttl", "2", "--admin-token", TOKEN]
    watch = None
    if watch_url is not None:
        watch = Watch(watch_url)
        watch.start()
        if not watch.ready.wait(10):
            raise RuntimeError("the bench's watch was not created")
    with Cluster(base, args) as cluster:
        cluster.add_all(["s1", "s2", "s3"])
        master = cluster.wait_master(timeout=30)
        wait_for(
            lambda: len(master.get("/cluster").json().get("members", [])) == 3,
            timeout=20,
            what="every member record",
        )
        return [one_switchover(cluster, watch) for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", default="etcd,local")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vipmon-switchover-") as tmp:
        base = Path(tmp)
        for backend in args.backends.split(","):
            (base / backend).mkdir()
            if backend == "etcd":
                with EtcdCluster(base / "etcd", size=3) as etcd:
                    urls = ",".join(etcd.client_urls)
                    flags = ["--backend", "etcd", "--etcd-endpoints", urls]
                    found = run(base / backend, flags, args.runs, etcd.client_urls[0])
                report("etcd, 3 members", found)
            else:
                flags = ["--state-dir", str(base / "state")]
                report("embedded store", run(base / backend, flags, args.runs, None))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
