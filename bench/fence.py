"""The kernel fence behind real load balancers: requests served off term, failover, cost.

Not a test (and not in ``make test``): it prints figures. The world is the one of
``tests/integration/test_fence_lb.py`` (:mod:`tests.support.fence_lb`): three nodes in
network namespaces, each a plain application on port 8080 that knows nothing of vipmon
and ``vipmon run`` on the embedded store (``--lease-ttl 2 --drain-time 0.3``), a load
balancer on the config ``vipmon adc-config ... --fenced`` prints, and a client sending
about 100 requests/s through the VIP (half on new connections, half on one kept-alive
connection). Each run is a switchover, a SIGTERM, a SIGKILL and a SIGSTOP (longer than
the TTL) of the master's vipmon; its application keeps running.

For each load balancer (nginx fenced, HAProxy at ``adc-config``'s default profile, at
``--profile fast`` and at HAProxy's own default timers, Caddy), with ``--fence-port``
and without it:

* **off term**: requests a node answered while it held no term, by the judge of the
  test: term T of node X holds from its ``began`` in ``/history`` to the next term's,
  and a request X answered over [sent, received] must meet one of X's terms;
* requests sent, and errors (refused, reset, 502, ...), which are counted, not judged.

Without the fence the load balancer config is the same text; only the nodes lack
``--fence-port``. For nginx that config round-robins over every application, so
unfenced it serves from every node: the unfenced cluster's own nginx config is the
passive one (``vipmon adc-config nginx`` without ``--fenced``), which needs an
application that answers 503 off the master, and PLAIN_APP does not.

Then, from the fenced runs: the VIP's crash failover (SIGKILL of the master's vipmon
to the first request served by the new master; median and worst over the runs, nginx
at TTL 2 first, the others for comparison), a planned switchover's gap at the VIP
(the last request served by the old master to the first served by the new; median),
and the CPU cost of one fence refresh: ``Fence.sync`` with a real libnftables in a
namespace of its own, each call a renewal with a new deadline (so each one calls the
kernel), CPU time and wall time per call.

Every wait is bounded; everything runs in namespaces the bench makes and deletes;
processes are stopped by PID. Usage (root, Debian's nginx, haproxy, caddy, nftables):

    .venv/bin/python bench/fence.py --runs 1        # about 3 minutes
    .venv/bin/python bench/fence.py --runs 5 --lb nginx --lb haproxy
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.fence_lb import LBS, Fault, Scenario, scenario  # noqa: E402
from tests.support.netns import World  # noqa: E402

_SYNC_LOOP = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from app.clock import MonotonicClock
from app.fence.fence import Fence
from app.fence.kernel import Libnftables
clock = MonotonicClock()
fence = Fence(Libnftables(), clock, "vipmon_bench", (8080,), True)
fence.install()
n = int(sys.argv[1])
cpu, wall = time.process_time(), time.perf_counter()
for _ in range(n):
    fence.sync(True, True, clock.now() + 1.5)  # a renewal: a new deadline, a kernel call
    assert fence.error is None, fence.error
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
same = clock.now() + 1.5
fence.sync(True, True, same)
idle = time.process_time()
for _ in range(n):
    fence.sync(True, True, same)  # nothing changed: no kernel call
idle = time.process_time() - idle
fence.close()
print(json.dumps({"n": n, "cpu": cpu, "wall": wall, "idle_cpu": idle}))
"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def served(
    run: Scenario, node: str, after: float, before: float = math.inf
) -> list[dict[str, Any]]:
    """Requests ``node`` answered that came back within (after, before), earliest first."""
    found = [r for r in run.records if r["status"] == 200 and r["node"] == node]
    return sorted((r for r in found if after < r["t1"] < before), key=lambda r: r["t1"])


def first_by_new(run: Scenario, kind: str) -> list[tuple[Fault, dict[str, Any]]]:
    """Per fault of ``kind``: the first request its new master served before the next fault."""
    out = []
    ends = [f.at for f in run.faults[1:]] + [math.inf]
    for f, end in zip(run.faults, ends, strict=True):
        first = served(run, f.new, f.at, end)
        if f.kind == kind and first:
            out.append((f, first[0]))
    return out


def crash_failovers(run: Scenario) -> list[float]:
    """Per SIGKILL: from the signal to the first request the new master served."""
    return [first["t1"] - f.at for f, first in first_by_new(run, "sigkill")]


def switchover_gaps(run: Scenario) -> list[float]:
    """Per switchover: the last request the old master served before the new one's first,
    to that first (receive times)."""
    out = []
    for f, first in first_by_new(run, "switchover"):
        before = served(run, f.old, 0.0, first["t1"])
        if before:
            out.append(first["t1"] - before[-1]["t1"])
    return out


def sync_cost(n: int) -> dict[str, float]:
    with World(["fence"]) as world:
        done = world["fence"].run([sys.executable, "-c", _SYNC_LOOP, str(n), str(REPO)], 120)
    if done.returncode != 0:
        raise RuntimeError(f"the Fence.sync loop failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fault rounds per world (each: 4)")
    parser.add_argument("--lb", action="append", choices=LBS, help="only these (repeatable)")
    parser.add_argument("--syncs", type=int, default=2000, help="Fence.sync calls timed")
    parser.add_argument("--keep", action="store_true", help="keep the logs and load files")
    parser.add_argument("--drain", type=float, default=0.3, help="the nodes' --drain-time, s")
    parser.add_argument("--fenced-only", action="store_true", help="skip the unfenced worlds")
    args = parser.parse_args()
    lbs = args.lb or list(LBS)
    work = Path(tempfile.mkdtemp(prefix="vipmon-fence-bench-"))
    runs: dict[tuple[str, bool], Scenario] = {}
    started = time.monotonic()
    try:
        for lb in lbs:
            for fenced in (True,) if args.fenced_only else (True, False):
                tag = f"{lb}-{'fenced' if fenced else 'unfenced'}"
                runs[lb, fenced] = scenario(
                    lb, work / tag, fenced=fenced, rounds=args.runs, drain=args.drain
                )
                print(f"  {tag}: done at {time.monotonic() - started:.0f} s", file=sys.stderr)
        cost = sync_cost(args.syncs)
    finally:
        if args.keep:
            print(f"  logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"vipmon fence behind load balancers: {args.runs} round(s) per world of switchover, "
        f"SIGTERM, SIGKILL, SIGSTOP of the master's vipmon; TTL 2 s, drain {args.drain} s, "
        "~100 requests/s"
    )
    print(f"  {'load balancer':<15}{'fence':<7}{'off term':>9}{'requests':>10}{'errors':>8}"
          "  served by node / errors by kind")  # fmt: skip
    for (lb, fenced), run in runs.items():
        v = run.verdict
        errors = ", ".join(f"{k} {n}" for k, n in v.errors.most_common()) or "-"
        print(
            f"  {lb:<15}{'yes' if fenced else 'no':<7}{len(v.wrong):>9}{v.total:>10}"
            f"{sum(v.errors.values()):>8}  {dict(sorted(v.served.items()))} / {errors}"
        )
    print("  (unfenced nginx: the fenced round-robin config; the unfenced cluster's own is the")
    print("  passive one, which needs an application answering 503 off the master)")
    print("VIP crash failover (SIGKILL of the master's vipmon -> first request served by the")
    print("new master) and planned switchover gap (old master's last -> new master's first):")
    for (lb, fenced), run in runs.items():
        if not fenced:
            continue
        crash, gaps = crash_failovers(run), switchover_gaps(run)
        crash_text = (
            f"median {ms(statistics.median(crash))}, worst {ms(max(crash))} (n={len(crash)})"
            if crash
            else "-"
        )
        gap_text = f"median {ms(statistics.median(gaps))} (n={len(gaps)})" if gaps else "-"
        missed = sum(f.kind == "switchover" for f in run.faults) - len(gaps)
        gap_text += f", {missed} term(s) the VIP never reached" if missed else ""
        print(f"  {lb:<15}crash failover {crash_text}; switchover gap {gap_text}")
    print(
        f"Fence.sync with a kernel call (libnftables, in a namespace), {cost['n']} calls: "
        f"CPU {cost['cpu'] / cost['n'] * 1e6:.0f} us per call, wall "
        f"{cost['wall'] / cost['n'] * 1e6:.0f} us per call; without a change (no call): "
        f"CPU {cost['idle_cpu'] / cost['n'] * 1e6:.1f} us"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
