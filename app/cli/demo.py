"""``vipmon demo``: three nodes and a real HAProxy on this host, and a live table.

The demo starts ``vipmon run`` children on free loopback ports, sharing the
embedded store in a temporary state directory, and, when ``haproxy`` is
installed, an HAProxy in front of them configured by ``vipmon adc-config
haproxy`` (:mod:`app.cli.demo_cluster`). Every refresh it prints each node's role
and term, what HAProxy sees on its stats socket, and where a request through the
VIP landed, with the ``kill -9`` line that fails the master over. A killed node is
restarted after ``--restart-after`` seconds.

Ctrl-C (SIGINT) or SIGTERM, or the end of ``--duration``, stops exactly the
processes the demo started, by PID, and removes the temporary directory.
Exit status: 0 after a clean run, 1 if the cluster could not be started, 2 for a
bad flag.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

import httpx

from app.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Subparsers
from app.cli.demo_cluster import Demo, StartError


def add_parser(sub: Subparsers) -> None:
    """Add ``demo`` to ``sub``."""
    parser = sub.add_parser(
        "demo",
        help="run a 3-node cluster behind HAProxy on this host",
        description="Start three nodes on the embedded store on loopback "
        "ports, put HAProxy in front when it is installed, and print a live "
        "table. Ctrl-C stops exactly what the demo started.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    parser.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    parser.add_argument(
        "--haproxy",
        default=shutil.which("haproxy") or "/usr/sbin/haproxy",
        help="the haproxy binary (skipped when missing)",
    )
    parser.add_argument("--refresh", type=float, default=1.0, help="seconds between tables")
    parser.add_argument(
        "--restart-after",
        type=float,
        default=5.0,
        help="restart a killed node after this many seconds (0: never)",
    )
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, SIGTERM or ``--duration``. Returns the exit status."""
    if args.nodes < 1 or args.refresh <= 0 or (args.duration is not None and args.duration <= 0):
        print("vipmon demo: --nodes, --refresh and --duration must be positive", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    demo = Demo(Path(tempfile.mkdtemp(prefix="vipmon-demo-")))
    try:
        return _run(demo, args, stop)
    finally:
        pids = demo.stop()
        print(
            f"stopped {len(pids)} processes (pids {' '.join(map(str, pids)) or '-'}); "
            f"removed {demo.workdir}",
            flush=True,
        )
        shutil.rmtree(demo.workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(demo: Demo, args: argparse.Namespace, stop: threading.Event) -> int:
    print(f"starting {args.nodes} nodes on the embedded store in {demo.workdir} ...", flush=True)
    try:
        demo.start_nodes(args.nodes)
        if os.access(args.haproxy, os.X_OK):
            demo.start_haproxy(args.haproxy)
        else:
            print(f"{args.haproxy} not found: showing the nodes without HAProxy", flush=True)
    except StartError as exc:
        print(f"vipmon demo: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    tty = sys.stdout.isatty()
    ends = time.monotonic() + args.duration if args.duration else float("inf")
    events: list[str] = []
    with httpx.Client(timeout=0.5) as client:
        while not stop.is_set() and time.monotonic() < ends:
            events = (events + demo.restart_dead(args.restart_after))[-5:]
            text = demo.table(client)
            if events:
                text += "\n" + "\n".join(events)
            print(("\x1b[H\x1b[2J" if tty else "") + text + ("" if tty else "\n"), flush=True)
            stop.wait(min(args.refresh, max(0.0, ends - time.monotonic())))
    return EXIT_OK
