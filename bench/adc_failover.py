"""Failover behind a real HAProxy: three timer sets, three events, two backends.

Not a test: it prints figures. Three ``vipmon run`` nodes, on the embedded
(local SQLite) store or on a 3-member etcd, behind an HAProxy configured by
``vipmon adc-config haproxy`` (tcp mode; the nodes' ``/role`` stands in for the
application, so every answer says which node served it). Per timer set:

* crash: the master is SIGKILLed (``--runs``, default 20);
* switchover: ``POST /admin/switchover`` to the master (``--load-runs``, default 10);
* sigterm: the master is SIGTERMed; it resigns (``--load-runs``).

Throughout each run a load generator sends about 200 requests/s through the
VIP, half over one kept-alive connection and half on new connections, and
HAProxy's stats socket is read every 10 ms. Per run, from the event:

* VIP failover: until the first request through HAProxy that the new master serves;
* old DOWN / new UP: until the stats socket shows the change;
* overlap / gap: how long the stats socket showed two servers UP / none UP;
* at nodes (switchover, sigterm): until the new master's own ``/monitor`` first
  answers 200, polled over connections opened before the event;
* failed requests: connection errors and resets, non-200 answers.

A killed or terminated node is restarted before the next run. Usage:

    .venv/bin/python bench/adc_failover.py [--runs 20] [--load-runs 10] [--backend both]
    .venv/bin/python bench/adc_failover.py --runs 2 --load-runs 1   # a smoke run
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.adc.runtime import servers_state  # noqa: E402
from app.adc.timers import HAPROXY_PROFILES, HaproxyTimers, NodeTiming, assess  # noqa: E402
from app.cli.demo_cluster import Demo, wait_until  # noqa: E402
from bench.failover import Poller, first_positive_elsewhere  # noqa: E402

SAMPLE = 0.01
"""Seconds between two reads of the stats socket."""
LOAD_PERIOD = 0.01
"""Seconds between two requests of one load connection: 2 x 100/s."""
RUN_LIMIT = 60.0
"""No thread of one run goes on longer than this."""
REQUEST_TIMEOUT = 0.5
TOKEN = secrets.token_hex(16)

TIMER_SETS = {
    "defaults": HaproxyTimers(
        inter=2, fastinter=2, downinter=2, rise=2, fall=3, timeout_check=2, timeout_connect=5
    ),
    # ``vipmon adc-config haproxy --profile conservative`` and ``--profile fast``
    "conservative": HAPROXY_PROFILES["conservative"],
    "fast": HAPROXY_PROFILES["fast"],
}
TIMER_NOTES = {
    "defaults": "HAProxy's defaults: inter/fastinter/downinter 2 s, rise 2, fall 3",
    "conservative": "shipped: inter/fastinter/downinter 1 s, rise 3, fall 1, check 0.5 s",
    "fast": "fast: inter 0.2 s, fastinter 0.25 s, downinter 0.2 s, rise 2, fall 1, check 0.15 s",
}
EVENTS = ("crash", "switchover", "sigterm")
KEEPALIVED = "keepalived 2.2.7 (measured, L2 VIP, defaults): 3.09 s median"


@dataclass
class Answer:
    """One request through the VIP."""

    sent: float
    done: float
    kept_alive: bool
    error: str  # "" when the answer was a 200
    node: str = ""
    master: bool = False


@dataclass
class Run:
    event: str
    failover: float
    old_down: float
    new_up: float
    overlap: float
    gap: float
    at_nodes: float | None
    took_ms: float | None  # the switchover's own figure, from its reply
    requests: int
    failed: Counter[str] = field(default_factory=Counter)
    off_master: int = 0  # 200s served by a node that was not master


class VipClient:
    """GET /role through the VIP with http.client: light on CPU, unlike httpx."""

    def __init__(self, port: int, kept_alive: bool) -> None:
        self.port = port
        self.kept_alive = kept_alive
        self.conn: http.client.HTTPConnection | None = None

    def get(self) -> Answer:
        sent = time.monotonic()
        conn = self.conn or http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT
        )
        headers = {} if self.kept_alive else {"Connection": "close"}
        try:
            conn.request("GET", "/role", headers=headers)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self.conn = None
            return Answer(sent, time.monotonic(), self.kept_alive, type(exc).__name__)
        done = time.monotonic()
        if self.kept_alive and not response.will_close:
            self.conn = conn
        else:
            conn.close()
            self.conn = None
        if response.status != 200:
            return Answer(sent, done, self.kept_alive, f"HTTP {response.status}")
        try:
            info = json.loads(body)
        except ValueError:
            return Answer(sent, done, self.kept_alive, "not JSON")
        return Answer(
            sent, done, self.kept_alive, "", str(info.get("node")), info.get("role") == "MASTER"
        )

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class Watch:
    """The load through the VIP (2 x 100 requests/s) and HAProxy's UP set every 10 ms."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.states: list[tuple[float, frozenset[str]]] = []
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._states, daemon=True),
            threading.Thread(target=self._load, args=(True,), daemon=True),
            threading.Thread(target=self._load, args=(False,), daemon=True),
        ]

    def _states(self) -> None:
        ends = time.monotonic() + RUN_LIMIT
        for _ in range(int(RUN_LIMIT / SAMPLE)):
            if self._stop.is_set() or time.monotonic() > ends:
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

    def _load(self, kept_alive: bool) -> None:
        client = VipClient(self.demo.vip_port, kept_alive)
        start = time.monotonic()
        try:
            for i in range(int(RUN_LIMIT / LOAD_PERIOD)):
                if self._stop.is_set() or time.monotonic() > start + RUN_LIMIT:
                    return
                self.answers.append(client.get())
                # On a schedule: a slow answer is not followed by a burst.
                self._stop.wait(max(0.0, start + (i + 1) * LOAD_PERIOD - time.monotonic()))
        finally:
            client.close()

    def served_by_new(self, old: str, since: float) -> Answer | None:
        return next(
            (a for a in self.answers if a.done > since and a.master and a.node != old), None
        )

    def __enter__(self) -> Watch:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)


def get_json(port: int, path: str) -> dict[str, Any]:
    """A node's answer to ``GET path``; {} when it does not answer."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("GET", path)
            info = json.loads(conn.getresponse().read())
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def role(port: int) -> str:
    return str(get_json(port, "/role").get("role", "no answer"))


def settled(demo: Demo) -> str | None:
    """The master's name once HAProxy has exactly it UP, every node runs and the
    master sees every node's member record (a switchover target needs one)."""
    if not all(c.alive() for c in demo.nodes):
        return None
    masters = [c.name for c in demo.nodes if role(demo.ports[c.name]) == "MASTER"]
    if len(masters) != 1:
        return None
    members = get_json(demo.ports[masters[0]], "/cluster").get("members", [])
    if {m.get("id") for m in members} != {c.name for c in demo.nodes}:
        return None
    up = [n for n, s in servers_state(demo.stats_socket, demo.backend).items() if s.up]
    return masters[0] if up == masters else None


def switchover(
    demo: Demo, old: str, target: str, pollers: list[Poller]
) -> tuple[float, float, float]:
    """POST /admin/switchover to ``old``: the event time, the seconds to ``target``'s
    first 200, and the seconds the node itself reports (``took_ms``)."""
    conn = http.client.HTTPConnection("127.0.0.1", demo.ports[old], timeout=40)
    conn.connect()  # before the clock starts: a connection set-up is no switchover time
    body = json.dumps({"to": target})
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        t0 = time.monotonic()
        conn.request("POST", "/admin/switchover", body=body, headers=headers)
        at_nodes = first_positive_elsewhere(pollers, t0)
        reply = conn.getresponse()
        text = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"switchover: HTTP {reply.status} {text[:300]!r}")
    finally:
        conn.close()
    return t0, at_nodes, float(json.loads(text)["took_ms"]) / 1000


def one_run(demo: Demo, event: str) -> Run:
    wait_until(lambda: settled(demo) is not None, "one master, UP alone in HAProxy", timeout=30)
    old = settled(demo)
    assert old is not None
    victim = next(c for c in demo.nodes if c.name == old)
    others = [c.name for c in demo.nodes if c.name != old]
    # Connected before the event; the switchover names its target, the first standby.
    pollers = [Poller(demo.ports[n]) for n in (others[:1] if event == "switchover" else others)]
    at_nodes: float | None = None
    reported: float | None = None
    try:
        for poller in pollers:
            poller.positive()
        with Watch(demo) as watch:
            time.sleep(0.5)
            if event == "switchover":
                t0, at_nodes, reported = switchover(demo, old, others[0], pollers)
            else:
                t0 = time.monotonic()
                victim.stop(signal.SIGKILL if event == "crash" else signal.SIGTERM)
                if event == "sigterm":
                    at_nodes = first_positive_elsewhere(pollers, t0)
            wait_until(
                lambda: watch.served_by_new(old, t0) is not None,
                "a request through the VIP served by the new master",
                timeout=30,
            )
            first = watch.served_by_new(old, t0)
            assert first is not None
            wait_until(
                lambda: bool(watch.states) and watch.states[-1][1] == frozenset({first.node}),
                "HAProxy to settle on the new master",
                timeout=30,
            )
            time.sleep(0.2)
    finally:
        for poller in pollers:
            poller.close()
    if event != "switchover":
        assert victim.proc is not None
        victim.proc.wait(20)
        victim.start()
    after = [(t - t0, up) for t, up in watch.states if t > t0]
    steps = [b[0] - a[0] for a, b in itertools.pairwise(after)]
    answers = list(watch.answers)
    return Run(
        event=event,
        failover=first.done - t0,
        old_down=next(t for t, up in after if old not in up),
        new_up=next(t for t, up in after if first.node in up),
        overlap=sum(dt for (_, up), dt in zip(after, steps, strict=False) if len(up) > 1),
        gap=sum(dt for (_, up), dt in zip(after, steps, strict=False) if not up),
        at_nodes=at_nodes,
        took_ms=reported,
        requests=len(answers),
        failed=Counter(
            f"{a.error} ({'kept-alive' if a.kept_alive else 'new conn'})"
            for a in answers
            if a.error
        ),
        off_master=sum(1 for a in answers if not a.error and not a.master),
    )


def dump(demo: Demo) -> None:
    """What every process and HAProxy looked like when a run failed."""
    for child in demo.nodes:
        state = role(demo.ports[child.name]) if child.alive() else "dead"
        print(f"--- {child.name} pid {child.pid} {state}\n{child.tail()}", file=sys.stderr)
    try:
        print(servers_state(demo.stats_socket, demo.backend), file=sys.stderr)
    except OSError as exc:
        print(f"stats socket: {exc}", file=sys.stderr)


def p99(values: list[float]) -> float:
    """Nearest rank: with fewer than 100 runs it is the maximum."""
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


def ms(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def spread(values: list[float]) -> str:
    return f"{ms(min(values))} / {ms(statistics.median(values))} / {ms(p99(values))}"


def bench_timer_set(
    label: str,
    store_args: list[str] | None,
    events: list[tuple[str, int]],
    args: argparse.Namespace,
) -> dict[str, list[Run]]:
    demo = Demo(Path(tempfile.mkdtemp(prefix="vipmon-bench-")))
    results: dict[str, list[Run]] = {}
    env = {"VIPMON_ADMIN_TOKEN": TOKEN, "VIPMON_LOG_LEVEL": args.node_log_level}
    try:
        demo.start_nodes(3, store_args, env)
        demo.start_haproxy(args.haproxy, TIMER_SETS[label])
        try:
            for event, runs in events:
                results[event] = [one_run(demo, event) for _ in range(runs)]
                print(f"  {label} {event}: {runs} runs done", file=sys.stderr, flush=True)
        except Exception:
            dump(demo)
            raise
    finally:
        demo.stop()
        if args.keep_logs:
            print(f"  {label}: node logs kept in {demo.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(demo.workdir, ignore_errors=True)
    return results


def table(results: dict[str, dict[str, list[Run]]]) -> list[str]:
    head = (
        f"  {'timers':<13}{'event':<11}{'VIP failover med/p99':>22}{'gap med/p99':>20}"
        f"{'at nodes med':>14}{'overlap total':>15}{'failed/requests':>17}"
        f"{'non-master 200s':>17}"
    )
    lines = [head]
    for label, by_event in results.items():
        for event, runs in by_event.items():
            fo = [r.failover for r in runs]
            gaps = [r.gap for r in runs]
            nodes = [r.at_nodes for r in runs if r.at_nodes is not None]
            failed = sum(r.failed.total() for r in runs)
            lines.append(
                f"  {label:<13}{event:<11}"
                f"{ms(statistics.median(fo)) + ' / ' + ms(p99(fo)):>22}"
                f"{ms(statistics.median(gaps)) + ' / ' + ms(p99(gaps)):>20}"
                f"{ms(statistics.median(nodes)) if nodes else '-':>14}"
                f"{ms(sum(r.overlap for r in runs)):>15}"
                f"{f'{failed}/{sum(r.requests for r in runs)}':>17}"
                f"{sum(r.off_master for r in runs):>17}"
            )
    lines.append(f"  {'reference':<13}{KEEPALIVED}")
    return lines


def details(results: dict[str, dict[str, list[Run]]]) -> list[str]:
    lines = []
    for label, by_event in results.items():
        for event, runs in by_event.items():
            lines.append(f"  {label} {event} (n={len(runs)}), min / median / p99:")
            for name in ("failover", "old_down", "new_up", "overlap", "gap", "at_nodes", "took_ms"):
                values = [getattr(r, name) for r in runs if getattr(r, name) is not None]
                if values:
                    lines.append(f"    {name:<10} {spread(values)}")
            failed: Counter[str] = sum((r.failed for r in runs), Counter())
            if failed:
                kinds = ", ".join(f"{k}: {n}" for k, n in failed.most_common())
                lines.append(f"    failed     {kinds}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="crashes per timer set")
    parser.add_argument(
        "--load-runs", type=int, default=10, help="switchovers and SIGTERMs per timer set"
    )
    parser.add_argument("--backend", choices=("local", "etcd", "both"), default="both")
    parser.add_argument(
        "--timers",
        default=",".join(TIMER_SETS),
        help="timer sets to run (default: all)",
    )
    parser.add_argument(
        "--load-timers",
        default="conservative,fast",
        help="timer sets that also get the switchover and the SIGTERM",
    )
    parser.add_argument("--haproxy", default="/usr/sbin/haproxy")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the nodes' and HAProxy's logs"
    )
    parser.add_argument(
        "--node-log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    args = parser.parse_args()
    labels = [t for t in args.timers.split(",") if t]
    load_labels = set(args.load_timers.split(","))
    unknown = set(labels) - set(TIMER_SETS)
    if unknown or args.runs < 1 or args.load_runs < 0:
        parser.error(f"--timers: one of {', '.join(TIMER_SETS)}; --runs >= 1, --load-runs >= 0")
    backends = ["local", "etcd"] if args.backend == "both" else [args.backend]
    started = time.monotonic()
    out = [
        f"bench/adc_failover.py: {args.runs} SIGKILL crashes per timer set, {args.load_runs} "
        f"switchovers and {args.load_runs} SIGTERMs per set in: {', '.join(sorted(load_labels))}",
        "  machine: 2 cores, a noisy VM shared with other work; 3 vipmon nodes, lease TTL 2 s;",
        "  HAProxy 2.6 in tcp mode, stats socket read every 10 ms; ~200 requests/s through the",
        "  VIP during every run (half on one kept-alive connection, half on new connections).",
        f"  p99 is the nearest rank: with {args.runs} (or {args.load_runs}) runs it is the max.",
        "  VIP failover: event -> first request through HAProxy served by the new master;",
        "  at nodes: event -> the new master's own /monitor first answers 200 (took_ms: the",
        "  switchover's own figure in its reply, from the handler's start to the new term);",
        "  overlap/gap: time HAProxy showed two servers / no server UP, summed over the runs",
        "  (overlap) or per run (gap); non-master 200s: answers from a node that was not master.",
        "",
        "Timer arithmetic, worst case from a crash to all VIP traffic on the new master",
        "(app.adc.timers.assess with the default lease timers):",
    ]
    for label in labels:
        worst = assess(TIMER_SETS[label], NodeTiming()).failover
        out.append(f"  {label:<13}{worst:5.2f} s   {TIMER_NOTES[label]}")
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="vipmon-bench-etcd-") as tmp:
            etcd = None
            if backend == "etcd":
                from tests.support.etcd import EtcdCluster

                etcd = EtcdCluster()
                etcd.start(3, Path(tmp))
                store_args = ["--backend", "etcd", "--etcd-endpoints", ",".join(etcd.client_urls)]
            else:
                store_args = None  # Demo's default: the embedded store in its work dir
            results: dict[str, dict[str, list[Run]]] = {}
            try:
                for label in labels:
                    events = [("crash", args.runs)]
                    if label in load_labels and args.load_runs:
                        events += [("switchover", args.load_runs), ("sigterm", args.load_runs)]
                    results[label] = bench_timer_set(label, store_args, events, args)
            finally:
                if etcd is not None:
                    etcd.stop_all()
        name = "embedded store (local SQLite)" if backend == "local" else "3-member etcd 3.4"
        out += ["", f"Backend: {name}", *table(results), "  per case:", *details(results)]
    out += ["", f"total bench time {time.monotonic() - started:.0f} s"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
