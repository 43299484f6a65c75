"""Bare hosts to a failover with ``vipmon bootstrap``, and crash failover at the VIP.

Not a test (and not in ``make test``): it prints figures. The world is the one of
``tests/hosts`` (:mod:`tests.support.hostworld`): each host a network namespace at
its own address with its own ``/etc``, ``/var/lib`` and ``/opt`` (overlays), running
its bundle's units' ``ExecStart`` lines with Debian's etcd and this checkout's vipmon;
``lb`` is the admin host and runs HAProxy on the VIP with the bundle's config.

1. **From bare hosts to the first failover, following the README** ("Production in
   three hosts"): each step as the README types it, timed (what systemd would do is
   the ``ExecStart`` lines; packages are installed already, and copying a bundle is a
   local ``install.sh``), to step 7's planned failover: SIGTERM to the master's
   vipmon (``systemctl stop vipmon``) until the VIP answers from the new master.
2. **Crash failover at the VIP**: the master's host powered off, its link down,
   frozen (longer than the TTL), ``--runs`` times each in one three-host cluster with
   TLS and auth on; from the fault to the first 200 from the new master at
   ``/monitor``, and to the VIP answering from it (sampled every 50 ms from the load
   balancer's namespace); median and worst. The checker judges every probe.

Every wait is bounded; everything runs in namespaces it makes and deletes; processes
are stopped by PID. Usage (root, Debian's etcd, etcdctl, haproxy):

    .venv/bin/python bench/hosts.py --runs 3      # about 3 minutes
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.hostcluster import LAYOUTS, Cluster, cluster
from tests.support.hostworld import API_PORT, HostWorld, bootstrap, running

#: The README's lines that this bench does not run, counted per host: apt-get and the
#: venv (step 2) are done already on these machines.
NOT_RUN_PER_HOST = 2


def readme_run(tmp: Path) -> None:
    """The README's steps 1-7 on three bare hosts; each step's seconds and commands."""
    hosts, _ = LAYOUTS["three"]
    steps: list[tuple[str, int, float]] = []
    t0 = time.monotonic()
    mark = t0

    def step(what: str, commands: int) -> None:
        nonlocal mark
        now = time.monotonic()
        steps.append((what, commands, now - mark))
        mark = now

    out = tmp / "prod"
    bootstrap(out, hosts, None)
    step("1. vipmon bootstrap (bundles, CA, adc/)", 1)
    step(f"2. apt-get install etcd-server; venv + pip (not run: {NOT_RUN_PER_HOST}/host)", 0)
    with HostWorld(out, tmp, [name for name, _ in hosts]) as world:
        world.install_all()
        world.boot_all()
        with running(world) as prober:
            c = Cluster(world, prober, out)
            c.master(0.0)
            step("3. install.sh on each host, units started; etcd formed, a master", len(hosts))
            done = world.admin("bootstrap", "auth", "--out", str(out))
            assert done.returncode == 0, done.stderr
            step("4. vipmon bootstrap auth", 1)
            status = [
                "status", "--url", f"https://{world['n1'].addr}:{API_PORT}",
                "--ca-file", str(out / "admin/ca.crt"),
            ]  # fmt: skip
            assert world.admin(*status).returncode == 0
            step("5. vipmon status: one MASTER, two STANDBY", 1)
            world.start_lb()
            master = c.master(time.monotonic())
            c.vip_reaches(master)
            step("6. HAProxy: 3 files placed, started; the VIP on the master", 4)
            world[master].running["vipmon.service"].send_signal(signal.SIGTERM)
            after = time.monotonic()
            new = c.master(after, {bh.name for bh in world.nodes} - {master})
            c.vip_reaches(new)
            status[2] = f"https://{world[new].addr}:{API_PORT}"
            said = world.admin(*status)  # 5: degraded, the stopped node does not answer
            assert said.returncode in (0, 5) and f"master: {new}" in said.stdout, said.stdout
            step(f"7. systemctl stop vipmon on {master}; vipmon status: {new} MASTER", 2)
            c.verdict_ok()
    typed = sum(n for _, n, _ in steps) + NOT_RUN_PER_HOST * len(hosts)
    print("From bare hosts to the first failover (README, three hosts):")
    for what, commands, seconds in steps:
        print(f"  {seconds:6.1f} s  {commands} command(s)  {what}")
    skipped = NOT_RUN_PER_HOST * len(hosts)
    print(f"  total {mark - t0:.1f} s, {typed} commands typed ({skipped} not run)")


def crash_runs(tmp: Path, runs: int) -> None:
    kinds = ("poweroff", "link", "freeze")
    with cluster(tmp, "three") as c:
        for _ in range(runs):
            for kind in kinds:
                print(" ", c.fault(kind, "master"), flush=True)
    print(f"Crash failover of the master's host, three hosts, {runs} run(s) each, 0 violations:")
    for kind in kinds:
        mine = [o for o in c.outcomes if o.kind == kind]
        mon = [o.monitor_s for o in mine]
        vip = [o.vip_s for o in mine]
        both = sum(o.etcd_leader == o.host for o in mine)
        print(
            f"  {kind:8}  /monitor median {statistics.median(mon):.2f} s, worst {max(mon):.2f} s;"
            f"  VIP median {statistics.median(vip):.2f} s, worst {max(vip):.2f} s"
            f"  ({both} of {len(mine)} with etcd's leader on the master's host)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds of the three crash faults")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vipmon-hosts-") as tmp:
        readme_run(Path(tmp) / "readme")
    with tempfile.TemporaryDirectory(prefix="vipmon-hosts-") as tmp:
        crash_runs(Path(tmp) / "crash", args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
