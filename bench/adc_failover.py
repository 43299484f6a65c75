"""Failover behind a real HAProxy: HAProxy's default timers against the shipped ones.

Not a test: it prints figures. Per run, three ``vipmon run`` nodes on the
embedded (local SQLite) store and an HAProxy configured by ``vipmon adc-config
haproxy`` (the nodes' ``/role`` stands in for the application); the master is
SIGKILLed and the bench records, from the kill:

* failover: until the first request through HAProxy that the new master serves;
* old DOWN / new UP: until HAProxy's stats socket shows the change;
* overlap: how long the stats socket showed two servers UP;
* gap: how long it showed no server UP.

Requests go through the VIP and the stats socket is read every 10 ms. The
killed node is restarted before the next run. Usage:

    .venv/bin/python bench/adc_failover.py [--runs 10]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.adc.runtime import servers_state  # noqa: E402
from app.adc.timers import HaproxyTimers  # noqa: E402
from app.demo import Demo, role_of, wait_until  # noqa: E402

SAMPLE = 0.01
TIMER_SETS = {
    "HAProxy defaults (inter 2s rise 2 fall 3)": HaproxyTimers(
        inter=2, fastinter=2, downinter=2, rise=2, fall=3, timeout_check=2, timeout_connect=5
    ),
    "shipped (inter/fastinter/downinter 1s rise 3 fall 1)": HaproxyTimers(),
}


@dataclass
class Run:
    failover: float
    old_down: float
    new_up: float
    overlap: float
    gap: float


class Watch:
    """Samples HAProxy's UP set and where a request through the VIP lands, every 10 ms."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.states: list[tuple[float, frozenset[str]]] = []
        self.served: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._states, daemon=True),
            threading.Thread(target=self._vip, daemon=True),
        ]

    def _states(self) -> None:
        for _ in range(int(60 / SAMPLE)):
            if self._stop.is_set():
                return
            try:
                up = frozenset(
                    n
                    for n, s in servers_state(self.demo.stats_socket, self.demo.backend).items()
                    if s.up
                )
                self.states.append((time.monotonic(), up))
            except OSError:
                pass
            self._stop.wait(SAMPLE)

    def _vip(self) -> None:
        url = f"http://127.0.0.1:{self.demo.vip_port}/role"
        with httpx.Client(timeout=0.5) as client:
            for _ in range(int(60 / SAMPLE)):
                if self._stop.is_set():
                    return
                try:
                    r = client.get(url, headers={"Connection": "close"})
                    info = r.json()
                    if info.get("role") == "MASTER":
                        self.served.append((time.monotonic(), str(info["node"])))
                except (httpx.HTTPError, ValueError):
                    pass
                self._stop.wait(SAMPLE)

    def __enter__(self) -> Watch:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)


def master_of(demo: Demo, client: httpx.Client) -> str | None:
    masters = [
        c.name
        for c in demo.nodes
        if c.alive() and role_of(client, demo.ports[c.name])[0] == "MASTER"
    ]
    return masters[0] if len(masters) == 1 else None


def settled(demo: Demo, client: httpx.Client) -> str | None:
    """The master's name once HAProxy has exactly it UP and every node runs."""
    master = master_of(demo, client)
    if master is None or not all(c.alive() for c in demo.nodes):
        return None
    up = [n for n, s in servers_state(demo.stats_socket, demo.backend).items() if s.up]
    return master if up == [master] else None


def one_run(demo: Demo, client: httpx.Client) -> Run:
    wait_until(
        lambda: settled(demo, client) is not None, "one master, UP alone in HAProxy", timeout=30
    )
    old = settled(demo, client)
    victim = next(c for c in demo.nodes if c.name == old)
    with Watch(demo) as watch:
        time.sleep(0.3)
        killed = time.monotonic()
        victim.stop(signal.SIGKILL)
        wait_until(
            lambda: any(t > killed and n != old for t, n in watch.served),
            "a request through the VIP served by the new master",
            timeout=30,
        )
        new = next(n for t, n in watch.served if t > killed and n != old)
        wait_until(
            lambda: bool(watch.states) and watch.states[-1][1] == frozenset({new}),
            "HAProxy to settle on the new master",
            timeout=30,
        )
        time.sleep(0.1)
    victim.proc.wait(10)
    victim.start()
    after = [(t - killed, up) for t, up in watch.states if t > killed]
    steps = [b[0] - a[0] for a, b in itertools.pairwise(after)]
    return Run(
        failover=next(t for t, n in watch.served if t > killed and n != old) - killed,
        old_down=next(t for t, up in after if old not in up),
        new_up=next(t for t, up in after if new in up),
        overlap=sum(dt for (t, up), dt in zip(after, steps, strict=False) if len(up) > 1),
        gap=sum(dt for (t, up), dt in zip(after, steps, strict=False) if not up),
    )


def dump(demo: Demo, client: httpx.Client) -> None:
    """What every process and HAProxy looked like when a run failed."""
    for child in demo.nodes:
        role = role_of(client, demo.ports[child.name]) if child.alive() else ("dead", "")
        print(f"--- {child.name} pid {child.pid} {role}\n{child.tail()}", file=sys.stderr)
    try:
        print(servers_state(demo.stats_socket, demo.backend), file=sys.stderr)
    except OSError as exc:
        print(f"stats socket: {exc}", file=sys.stderr)


def row(name: str, values: list[float]) -> str:
    return (
        f"  {name:<10} min {min(values):6.2f}  median {statistics.median(values):6.2f}  "
        f"max {max(values):6.2f}   (n={len(values)}, runs > 0: "
        f"{sum(v > 0 for v in values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--haproxy", default="/usr/sbin/haproxy")
    args = parser.parse_args()
    print(
        f"bench/adc_failover.py: {args.runs} SIGKILL failovers per timer set; 3 nodes on the "
        "embedded local store, lease TTL 2 s; HAProxy 2.6 in tcp mode; seconds from the kill"
    )
    for label, timers in TIMER_SETS.items():
        demo = Demo(Path(tempfile.mkdtemp(prefix="vipmon-bench-")))
        try:
            demo.start_nodes(3)
            demo.start_haproxy(args.haproxy, timers)
            with httpx.Client(timeout=0.5) as client:
                try:
                    runs = [one_run(demo, client) for _ in range(args.runs)]
                except Exception:
                    dump(demo, client)
                    raise
        finally:
            demo.stop()
            shutil.rmtree(demo.workdir, ignore_errors=True)
        print(f"\n{label}:")
        for field in ("failover", "old_down", "new_up", "overlap", "gap"):
            print(row(field, [getattr(r, field) for r in runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
