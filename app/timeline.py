"""The ``vipmon history`` command: a node's ``/history`` as a table, newest term first."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any


def add_history_parser(sub: argparse._SubParsersAction[Any]) -> None:
    from app.cli import _add_client_tls

    history = sub.add_parser(
        "history",
        help="print the cluster's last terms: who held each, when, how it ended, the gaps",
    )
    history.add_argument(
        "--url", default="http://127.0.0.1:8700", help="any node's API URL (default: %(default)s)"
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
    _add_client_tls(history)
    history.set_defaults(func=_history)


def _history(args: argparse.Namespace) -> int:
    from app.cli import EXIT_USAGE, _base_url, _verify

    if not 1 <= args.limit <= 1000:
        print(f"vipmon history: --limit must be 1 to 1000, not {args.limit}", file=sys.stderr)
        return EXIT_USAGE
    base = _base_url(args.url)
    import httpx

    try:
        with httpx.Client(timeout=args.timeout, verify=_verify(args)) as client:
            reply = client.get(f"{base}/history", params={"limit": args.limit})
            if reply.status_code != 200:
                print(
                    f"vipmon history: {reply.url} answered {reply.status_code}, not 200",
                    file=sys.stderr,
                )
                return 1
            answer = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"vipmon history: cannot read {base}: {exc}", file=sys.stderr)
        return 1
    print(format_history(answer))
    return 0


def format_history(answer: dict[str, Any]) -> str:
    """Render a ``/history`` answer: one row per term, the gap before it in the last column."""
    rows = [("TERM", "NODE", "BEGAN (UTC)", "ENDED (UTC)", "HOW", "GAP BEFORE")]
    for term in answer.get("terms", []):
        how = term.get("how") or "holding"
        if term.get("to"):
            how = f"{how} to {term['to']}"
        gap, gap_max = term.get("failover_gap_ms"), term.get("failover_gap_max_ms")
        rows.append(
            (
                str(term.get("term", "")),
                str(term.get("node", "")),
                _time(term.get("began")),
                _time(term.get("ended")) if term.get("ended") else "-",
                how,
                _gap(gap, gap_max),
            )
        )
    if len(rows) == 1:
        return f"no terms recorded yet (asked {answer.get('node', '?')})"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.append("")
    lines.append(
        f"asked: {answer.get('node', '?')}; a gap runs from the previous term's end to this "
        "term's first positive answer, by the two nodes' clocks; after a crash it is a range: "
        "the real outage lies within it"
    )
    return "\n".join(lines)


def _gap(gap: object, gap_max: object) -> str:
    """``0.005 s``, or ``0.005 to 2.505 s`` after a crash; ``-`` when unrecorded."""
    if not isinstance(gap, int):
        return "-"
    if isinstance(gap_max, int) and gap_max > gap:
        return f"{gap / 1000:.3f} to {gap_max / 1000:.3f} s"
    return f"{gap / 1000:.3f} s"


def _time(value: object) -> str:
    if not isinstance(value, str):
        return "-"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
