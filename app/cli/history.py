"""``vipmon history``: a node's ``/history`` as a table (:mod:`app.timeline`).

Exit status: 0 with the table printed; 1 when the node cannot be read or answers
anything but 200; 2 for a bad flag (``--limit`` outside 1 to 1000, a URL with a path).
"""

from __future__ import annotations

import argparse
import sys

import httpx

from app.cli.common import (
    DEFAULT_NODE_URL,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_client_tls,
    client_verify,
    node_url,
)
from app.timeline import format_history


def add_parser(sub: Subparsers) -> None:
    """Add ``history`` to ``sub``."""
    history = sub.add_parser(
        "history",
        help="print the cluster's last terms: who held each, when, how it ended, the gaps",
    )
    history.add_argument(
        "--url", default=DEFAULT_NODE_URL, help="any node's API URL (default: %(default)s)"
    )
    history.add_argument(
        "--limit",
        type=int,
        default=20,
        help="how many terms, newest first, 1 to 1000 (default: %(default)s)",
    )
    history.add_argument(
        "--timeout", type=float, default=2.0, help="seconds per request (default: %(default)s)"
    )
    add_client_tls(history)
    history.set_defaults(func=print_history)


def print_history(args: argparse.Namespace) -> int:
    """GET ``/history?limit=N`` from ``--url`` and print it; the exit status."""
    if not 1 <= args.limit <= 1000:
        print(f"vipmon history: --limit must be 1 to 1000, not {args.limit}", file=sys.stderr)
        return EXIT_USAGE
    base = node_url(args.url)
    try:
        with httpx.Client(timeout=args.timeout, verify=client_verify(args)) as client:
            reply = client.get(f"{base}/history", params={"limit": args.limit})
            if reply.status_code != 200:
                print(
                    f"vipmon history: {reply.url} answered {reply.status_code}, not 200",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            answer = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"vipmon history: cannot read {base}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(format_history(answer))
    return EXIT_OK
