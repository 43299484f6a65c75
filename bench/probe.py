"""Probe-path figures: /monitor on the master against a bare uvicorn floor, and idle cost.

Not a test: it prints figures and asserts nothing.

Load. ``wrk -t1`` drives, over loopback, three kinds of target started by this
process: the floor (``bench/floor_app.py``: a pure ASGI app on uvicorn with
httptools that answers every request ``200 ok``), the master of one vipmon node
on the embedded store, and the master of three vipmon nodes on a 3-member etcd
with the election running. Each round runs, for c=10 then c=50 connections,
every target in turn, so that all see the same state of the machine; every
target runs all the time. It prints each run's Requests/sec, 99th-percentile
latency, non-2xx count and socket errors, then per target and concurrency the
median over the rounds and its ratio to the floor's median (req/s, and p99).
It also prints each vipmon master's RSS before and after the load.

Each run's line and each phase also give the CPU steal (``/proc/stat``): on a
virtual machine the hypervisor's share, which makes figures noisy when high.

Idle. Two fresh vipmon nodes per backend (a master and a standby), no probes:
the CPU time of each node's own Python process (``/proc/<pid>/stat`` utime +
stime) over ``--idle-seconds``, as % of one core, and its VmRSS (1 MB = 1024 kB).
The backends idle side by side; etcd's own CPU is not counted.

    python bench/probe.py [--backends local,etcd] [--rounds 3] [--duration 5]
                          [--idle-seconds 60] [--skip-load] [--skip-idle]

Needs ``wrk`` (Debian package ``wrk``) for the load and ``/usr/bin/etcd``
(Debian package ``etcd-server``) for the etcd backend; ``make bench-deps``
installs wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procfs import (
    children,
    cpu_seconds,
    machine_jiffies,
    rss_mb,
    runs_python_module,
    steal_percent,
)
from bench.wrk import WrkResult, run_wrk
from tests.support.etcd import ETCD_BIN, EtcdCluster
from tests.support.nodes import Cluster, Node, wait_for
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
BACKENDS = ("local", "etcd")
CONCURRENCIES = (10, 50)
START_TIMEOUT_S = 20.0
MASTER_TIMEOUT_S = 30.0
IDLE_SETTLE_S = 2.0
STOP_TIMEOUT_S = 10.0
EXIT_MISSING_TOOL = 3


# --- processes -------------------------------------------------------------------------------


def _answers_200(url: str) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=0.5) as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def floor_server(base: Path) -> Iterator[str]:
    """Run ``bench/floor_app.py`` on uvicorn (one worker); yield its URL; stop it by PID."""
    port = free_port(HOST)
    cmd = [
        sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--http", "httptools",
        "--no-access-log", "--log-level", "warning", "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    with (base / "floor.log").open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    url = f"http://{HOST}:{port}/monitor"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the floor app exited {proc.returncode}; see {base}/floor.log")
            return _answers_200(url)

        wait_for(ready, timeout=START_TIMEOUT_S, interval=0.05, what="the floor app to serve")
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait(STOP_TIMEOUT_S)


def backend_args(backend: str, base: Path, etcd: EtcdCluster | None, cluster: str) -> list[str]:
    """vipmon's command-line flags for ``backend``; each ``cluster`` name its own election."""
    if backend == "etcd":
        assert etcd is not None
        endpoints = ",".join(etcd.client_urls)
        return ["--backend", "etcd", "--etcd-endpoints", endpoints, "--cluster", cluster]
    state = str(base / f"{cluster}-state")
    return ["--backend", "local", "--state-dir", state, "--cluster", cluster]


def start_cluster(
    stack: contextlib.ExitStack, base: Path, args: list[str], size: int, prefix: str
) -> Cluster:
    """Start ``size`` vipmon nodes (stopped with ``stack``) and wait for one master."""
    base.mkdir(parents=True, exist_ok=True)
    cluster = stack.enter_context(Cluster(base, args))
    for i in range(1, size + 1):
        cluster.add(f"{prefix}{i}")
    cluster.wait_master(timeout=MASTER_TIMEOUT_S)
    return cluster


def vipmon_pid(node: Node) -> int:
    """The PID of the Python process that runs ``app run`` for ``node``.

    ``Node.pid`` is the process ``Node`` started; if that is a wrapper, the child
    that runs vipmon. Raises RuntimeError if neither is.
    """
    if runs_python_module(node.pid, "app", "run"):
        return node.pid
    for child in children(node.pid):
        if runs_python_module(child, "app", "run"):
            print(f"note: {node.node_id}: Node.pid {node.pid} is a wrapper; using {child}")
            return child
    raise RuntimeError(f"no vipmon python process at or under PID {node.pid}")


# --- load ------------------------------------------------------------------------------------


@dataclass
class Target:
    """Something wrk drives: the floor (``cluster`` None) or a vipmon cluster's master."""

    name: str
    url: str
    cluster: Cluster | None = None
    master: Node | None = None

    def aim(self) -> None:
        """Point a vipmon target at its current master; say so if the master moved."""
        if self.cluster is None:
            return
        master = self.cluster.wait_master(timeout=MASTER_TIMEOUT_S)
        if self.master is not None and master is not self.master:
            print(f"note: {self.name}: master moved {self.master.node_id} -> {master.node_id}")
        self.master, self.url = master, master.url + "/monitor"


def load_targets(
    stack: contextlib.ExitStack, backends: list[str], base: Path, etcd: EtcdCluster | None
) -> list[Target]:
    targets = [Target("floor", stack.enter_context(floor_server(base)))]
    for backend in backends:
        args = backend_args(backend, base, etcd, "bench-load")
        size = 3 if backend == "etcd" else 1
        cluster = start_cluster(stack, base / f"load-{backend}", args, size, "n")
        target = Target(f"vipmon {backend}", "", cluster)
        target.aim()
        targets.append(target)
    return targets


Results = dict[tuple[str, int], list[WrkResult]]


def run_rounds(targets: list[Target], rounds: int, duration: int) -> Results:
    """Every round: for each concurrency, every target in turn. Prints each run."""
    results: Results = {(t.name, c): [] for t in targets for c in CONCURRENCIES}
    for r in range(1, rounds + 1):
        for c in CONCURRENCIES:
            for target in targets:
                target.aim()
                since = machine_jiffies()
                res = run_wrk(target.url, c, duration)
                steal = steal_percent(since)
                results[(target.name, c)].append(res)
                errors = f"  socket errors: {res.socket_errors}" if res.socket_errors else ""
                print(
                    f"round {r}  {target.name:<14} c={c:<3} {res.requests_per_s:>9.1f} req/s  "
                    f"p99 {res.p99_ms:7.3f} ms  non-2xx {res.non_2xx}  "
                    f"cpu steal {steal:4.1f} %{errors}",
                    flush=True,
                )
    return results


def load_table(targets: list[Target], results: Results) -> list[str]:
    """Medians per target and concurrency, with ratios to the floor's medians."""
    lines = [
        f"{'target':<16}  {'c':>3}  {'req/s':>9}  {'p99 ms':>8}  "
        f"{'ratio(req/s)':>12}  {'ratio(p99)':>10}  {'non-2xx':>7}"
    ]
    for c in CONCURRENCIES:
        floor = results[("floor", c)]
        floor_rps = statistics.median(r.requests_per_s for r in floor)
        floor_p99 = statistics.median(r.p99_ms for r in floor)
        for target in targets:
            runs = results[(target.name, c)]
            rps = statistics.median(r.requests_per_s for r in runs)
            p99 = statistics.median(r.p99_ms for r in runs)
            ratios = f"{rps / floor_rps:>12.2f}  {p99 / floor_p99:>10.2f}"
            if target.cluster is None:
                ratios = " " * len(ratios)
            non_2xx = sum(r.non_2xx for r in runs)
            lines.append(
                f"{target.name:<16}  {c:>3}  {rps:>9.0f}  {p99:>8.3f}  {ratios}  {non_2xx:>7}"
            )
    return lines


def load_phase(
    backends: list[str], base: Path, etcd: EtcdCluster | None, rounds: int, duration: int
) -> list[str]:
    with contextlib.ExitStack() as stack:
        targets = load_targets(stack, backends, base, etcd)
        masters = {t.name: t.master for t in targets if t.master is not None}
        rss_before = {name: rss_mb(vipmon_pid(node)) for name, node in masters.items()}
        since = machine_jiffies()
        results = run_rounds(targets, rounds, duration)
        lines = load_table(targets, results)
        lines.append(f"load: cpu steal {steal_percent(since):.1f} % of the machine's CPU time")
        for name, node in masters.items():
            lines.append(
                f"rss {name} master {node.node_id}: {rss_before[name]:.1f} MB before the load, "
                f"{rss_mb(vipmon_pid(node)):.1f} MB after"
            )
    return lines


# --- idle ------------------------------------------------------------------------------------


def has_role(node: Node, role: str) -> bool:
    """True when the node's /monitor body starts ``ROLE=<role>``."""
    return node.monitor()[1].startswith(f"ROLE={role} ")


def idle_nodes(
    stack: contextlib.ExitStack, backends: list[str], base: Path, etcd: EtcdCluster | None
) -> dict[str, Node]:
    """Per backend a fresh master and standby, by label ("master local", ...)."""
    nodes: dict[str, Node] = {}
    for backend in backends:
        args = backend_args(backend, base, etcd, "bench-idle")
        cluster = start_cluster(stack, base / f"idle-{backend}", args, 2, "i")
        master = cluster.wait_master(timeout=MASTER_TIMEOUT_S)
        standby = next(n for n in cluster.nodes if n is not master)
        wait_for(
            functools.partial(has_role, standby, "STANDBY"),
            timeout=MASTER_TIMEOUT_S,
            what=f"{standby.node_id} to be standby",
        )
        nodes[f"master {backend}"], nodes[f"standby {backend}"] = master, standby
    return nodes


def measure_idle(nodes: dict[str, Node], seconds: float) -> list[str]:
    """CPU % of one core and RSS of every node's own process over ``seconds``, no probes."""
    pids = {label: vipmon_pid(node) for label, node in nodes.items()}
    time.sleep(IDLE_SETTLE_S)
    since = machine_jiffies()
    start = {label: cpu_seconds(pid) for label, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    steal = steal_percent(since)
    spent = {label: cpu_seconds(pid) - start[label] for label, pid in pids.items()}
    lines = [f"idle: cpu steal {steal:.1f} % of the machine's CPU time"]
    for label, pid in pids.items():
        lines.append(
            f"idle {label}: cpu {100 * spent[label] / elapsed:.2f} % of a core over "
            f"{elapsed:.0f} s, rss {rss_mb(pid):.1f} MB  (node {nodes[label].node_id}, pid {pid})"
        )
    for label, node in nodes.items():
        if not has_role(node, label.split()[0].upper()):
            lines.append(f"note: {label} {node.node_id} changed role while idle")
    return lines


def idle_phase(
    backends: list[str], base: Path, etcd: EtcdCluster | None, seconds: float
) -> list[str]:
    with contextlib.ExitStack() as stack:
        nodes = idle_nodes(stack, backends, base, etcd)
        print(f"idling {seconds:.0f} s: {', '.join(nodes)}", flush=True)
        return measure_idle(nodes, seconds)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="local,etcd (default)")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="s per wrk run (default 5)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="default 60")
    parser.add_argument("--skip-load", action="store_true", help="no wrk runs")
    parser.add_argument("--skip-idle", action="store_true", help="no idle measurement")
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown or not args.backends:
        parser.error(f"--backends takes local and/or etcd, not {','.join(unknown) or 'nothing'}")
    if args.rounds < 1 or args.duration < 1 or args.idle_seconds <= 0:
        parser.error("--rounds, --duration and --idle-seconds must be positive")
    return args


def missing_tool(args: argparse.Namespace) -> str | None:
    if not args.skip_load and shutil.which("wrk") is None:
        return "wrk is not installed: install the Debian package wrk (make bench-deps)"
    if "etcd" in args.backends and not ETCD_BIN.exists():
        return f"{ETCD_BIN} is missing: install the Debian package etcd-server (make system-deps)"
    return None


def machine_line() -> str:
    """CPU count and load average, to judge whether anything else ran on the machine."""
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"machine: {os.cpu_count()} CPUs, load average {load}"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the with-blocks: every child is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = missing_tool(args)
    if problem is not None:
        print(f"bench/probe.py: {problem}", file=sys.stderr)
        return EXIT_MISSING_TOOL
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    began = time.monotonic()
    lines = [f"at start, {machine_line()}"]
    with (
        tempfile.TemporaryDirectory(prefix="vipmon-probe-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        base = Path(tmp)
        etcd = None
        if "etcd" in args.backends:
            etcd = stack.enter_context(EtcdCluster(base / "etcd", size=3))
        if not args.skip_load:
            lines += load_phase(args.backends, base, etcd, args.rounds, args.duration)
        if not args.skip_idle:
            lines += idle_phase(args.backends, base, etcd, args.idle_seconds)
    lines.append(f"at end, {machine_line()}")
    print()
    print("\n".join(lines))
    print(f"took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
