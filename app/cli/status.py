"""``vipmon status``: ask every node what it is, print the table and the cluster line.

The report itself (asking the nodes, the views, the verdict, the text) is
:mod:`app.status`; this module is the command: its flags, one report or one every
second (``--watch``), and the exit status, which is the verdict's (see the epilog).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import httpx

from app.cli.common import Subparsers, add_client_tls, client_verify
from app.status import DEFAULT_URL, Report, gather, parse_seeds, render, unread_line
from app.verdict import EXIT_UNREAD

WATCH_INTERVAL = 1.0

HELP_EPILOG = """\
The cluster line says "master: N (term T)" when exactly one node answers MASTER,
else "no master: <why>" (paused; store unreachable from every node; the leader key
names a node that does not answer; no eligible node; an election in progress; ...).
DRAINING is not MASTER: a master handing over counts as no master. Each process is
one row: two processes started with the same --node-id are two rows.

exit status:
  0  exactly one node answers MASTER, and every member answers
  1  no node could be read
  2  usage error (bad flag, a URL with a path)
  3  no master
  4  more than one node answers MASTER (a split: should never happen)
  5  one node answers MASTER, but the cluster is degraded: a member does not
     answer, or one node id answers from two processes

--watch redraws every second until Ctrl-C and exits with the last frame's status;
each frame takes at most 3 x --timeout."""


def add_parser(sub: Subparsers) -> None:
    """Add ``status`` to ``sub``."""
    status = sub.add_parser(
        "status",
        help="ask every node for its role; say which one is master",
        description="Ask every node what it is right now, and whether the cluster has a master.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "--url",
        action="append",
        help="a node's API URL, repeatable: the first that answers lists the members "
        f"(default: {DEFAULT_URL})",
    )
    status.add_argument(
        "--timeout",
        type=positive_seconds,
        default=2.0,
        help="seconds per request (default: %(default)s)",
    )
    status.add_argument("--watch", action="store_true", help="redraw every second until Ctrl-C")
    add_client_tls(status)
    status.set_defaults(func=print_status)


def positive_seconds(text: str) -> float:
    """argparse ``type`` of ``--timeout``: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds above 0")
    return value


def print_status(args: argparse.Namespace) -> int:
    """The command: :func:`run_status` with the parsed flags."""
    return run_status(args.url, args.timeout, client_verify(args), watch=args.watch)


def run_status(
    urls: Sequence[str] | None,
    timeout: float,
    verify: ssl.SSLContext | bool = True,
    *,
    watch: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the report (every second with ``watch``); the verdict's exit status.

    SettingsError for a URL with a path. With ``watch``, Ctrl-C ends the loop without a
    traceback and the status is the last frame's.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    seeds = parse_seeds(urls)
    if watch:
        frames = _Frames()
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it: no traceback
            asyncio.run(_watch(seeds, timeout, verify, out, frames))
        return frames.code
    report = asyncio.run(_once(seeds, timeout, verify))
    if report.verdict.code == EXIT_UNREAD:
        print(unread_line(report), file=err)
    else:
        print(render(report), file=out)
    return report.verdict.code


async def _once(seeds: Sequence[str], timeout: float, verify: ssl.SSLContext | bool) -> Report:
    async with httpx.AsyncClient(timeout=timeout, verify=verify) as client:
        return await gather(client, seeds, timeout)


@dataclass
class _Frames:
    """The watch loop's last exit status, kept outside the loop for Ctrl-C."""

    code: int = EXIT_UNREAD


async def _watch(
    seeds: Sequence[str],
    timeout: float,
    verify: ssl.SSLContext | bool,
    out: TextIO,
    frames: _Frames,
) -> None:
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=timeout, verify=verify) as client:
        while True:
            started = loop.time()
            report = await gather(client, seeds, timeout)
            stamp = time.strftime("%H:%M:%S")
            head = f"vipmon status --watch: {stamp}, every {WATCH_INTERVAL:g} s (Ctrl-C ends)"
            out.write(f"{clear}{head}\n\n{render(report)}\n\n")
            out.flush()
            frames.code = report.verdict.code
            await asyncio.sleep(max(0.0, started + WATCH_INTERVAL - loop.time()))
