"""The table of ``vipmon history``: a node's ``/history`` answer as text, newest term first.

The command (its flags, the request) is :mod:`app.cli.history`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


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
