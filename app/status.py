"""The report of ``vipmon status``: what every node says about itself now, and the verdict.

One view of the cluster, taken from each node's own ``/role``, never from one node's
``/cluster`` (which only names the holder of the leader key as this node last read it):

1. :func:`gather` reads ``/cluster`` from every seed URL at once and keeps the first
   seed (in the order given) that answered, for its member list; then it GETs ``/role``
   from every listed member, every missing one and every seed not listed, at once. Each request is
   bounded by ``timeout`` as a whole. Two MASTER answers are asked once more before
   they count: a planned hand-over between two reads would otherwise look like a split.
2. :func:`build_report` (pure) turns those answers into one
   :class:`app.status_views.MemberView` per process (:mod:`app.status_views`) and a
   :class:`app.verdict.Verdict`: the cluster line and the exit status.
3. :func:`render` (pure) prints them as a table and the cluster line; :func:`unread_line`
   is the one-line error when no node could be read.

The command (its flags, ``--watch``) is :mod:`app.cli.status`.

Exit status: 0 exactly one node answers MASTER; 1 no node could be read; 2 usage
error; 3 no master; 4 more than one node answers MASTER; 5 one master, but a member is
missing or does not answer, or a node id answers from two processes (see
:mod:`app.verdict`). DRAINING is
not MASTER (its ``/monitor`` answers 503): a cluster whose master drains has no master (3).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from app.errors import SettingsError
from app.role import Role
from app.settings import base_url
from app.status_views import Answer, MemberView, member_views, pick_cluster, targets
from app.verdict import Verdict, missing_words, store_lines, verdict

DEFAULT_URL = "http://127.0.0.1:8700"
_DETAIL_MAX = 60
_ERROR_MAX = 100


@dataclass(frozen=True)
class Report:
    """Every node's view, the verdict, and where the member list came from."""

    views: tuple[MemberView, ...]
    verdict: Verdict
    listed_by: str | None = None
    notes: tuple[str, ...] = field(default=())


# -- input ---------------------------------------------------------------------------


def parse_seeds(urls: Sequence[str] | None) -> list[str]:
    """The seed URLs, each ``scheme://host:port``, in order, once each; SettingsError if not."""
    seeds: list[str] = []
    for url in urls or [DEFAULT_URL]:
        try:
            base = base_url(url)
        except ValueError as exc:
            raise SettingsError("url", str(exc)) from None
        if base not in seeds:
            seeds.append(base)
    return seeds


# -- the pure part: answers -> views (app.status_views) -> verdict -> text -------------


def build_report(
    seeds: Sequence[str], clusters: Mapping[str, Answer], roles: Mapping[str, Answer]
) -> Report:
    """The whole report from the answers: ``/cluster`` per seed, ``/role`` per URL."""
    listed_by, cluster = pick_cluster(seeds, clusters)
    views = member_views(targets(seeds, cluster), roles)
    notes: tuple[str, ...] = ()
    if isinstance(cluster, str):
        notes = (f"no seed answered /cluster ({listed_by}: {cluster}); only the seeds are shown",)
        listed_by = ""
    return Report(tuple(views), verdict(views), listed_by or None, notes)


def _cells(view: MemberView) -> tuple[str, ...]:
    gone = missing_words(view) if view.missing else ""
    if not view.reachable:
        note = "; ".join(filter(None, [gone, view.error]))
        return (view.node, view.role, "-", "-", "-", "-", "-", "-", view.url, note)
    lease = "-"
    if view.lease_ms > 0 or view.role in (Role.MASTER, Role.DRAINING):
        lease = f"{view.lease_ms / 1000:.1f}s"
    check = "none"
    if view.check_configured:
        check = "ok" if view.check_ok else "failing"
    notes = [text for text in (gone, view.note) if text]
    if view.check_configured and not view.check_ok and view.check_detail:
        notes.append("check: " + _clip(view.check_detail))
    return (
        view.node,
        view.role,
        str(view.term) if view.term else "-",
        lease,
        "ok" if view.store_ok else "unreachable",
        "yes" if view.maintenance else "no",
        "yes" if view.paused else "no",
        check,
        view.url,
        "; ".join(notes),
    )


def _clip(text: str, limit: int = _DETAIL_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


HEADER = ("NODE", "ROLE", "TERM", "LEASE", "STORE", "MAINT", "PAUSED", "CHECK", "URL", "NOTE")


def render(report: Report) -> str:
    """The table (one row per node, as it answers for itself) and the cluster line."""
    rows = [HEADER, *(_cells(v) for v in report.views)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.append("")
    lines.append(report.verdict.line)
    lines.extend(store_lines(report.views))
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines)


def unread_line(report: Report) -> str:
    """The one-line error of exit status 1: each URL asked, and why it gave nothing."""
    parts = [f"{v.url or v.node}: {v.error}" for v in report.views]
    return "vipmon status: no node could be read: " + "; ".join(parts)


# -- asking the nodes -----------------------------------------------------------------


def _cause_words(exc: BaseException) -> str | None:
    """Words for the TLS or socket error under an httpx error (anyio hides both)."""
    link: BaseException | None = exc
    for _ in range(8):  # the chain is short; bound the walk anyway
        if link is None:
            return None
        if isinstance(link, ssl.SSLCertVerificationError):
            return f"TLS: certificate verify failed: {getattr(link, 'verify_message', link)}"
        if isinstance(link, ssl.SSLError):
            reason = str(getattr(link, "reason", None) or link)
            alert = reason.partition("ALERT_")[2]
            words = (alert or reason).lower().replace("_", " ")
            return f'TLS: the node refused us (alert "{words}")' if alert else f"TLS: {words}"
        if isinstance(link, OSError) and link.errno:
            return os.strerror(link.errno).lower()
        link = link.__cause__ or link.__context__
    return None


def _short_error(exc: Exception, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    text = _cause_words(exc) or " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and not text.startswith("TLS"):
        text = f"cannot connect: {text}"
    return _clip(text, _ERROR_MAX)


async def fetch(client: httpx.AsyncClient, url: str, timeout: float) -> Answer:
    """GET ``url`` within ``timeout`` s as a whole: its JSON object, or why not."""
    try:
        reply = await asyncio.wait_for(client.get(url), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:  # ssl.SSLError may come raw
        return _short_error(exc, timeout)
    if reply.status_code != 200:
        return f"answered {reply.status_code}, not 200"
    try:
        data = reply.json()
    except ValueError:
        return "answered something that is not JSON"
    return data if isinstance(data, dict) else "answered JSON that is not an object"


async def _fetch_all(
    client: httpx.AsyncClient, urls: Sequence[str], path: str, timeout: float
) -> dict[str, Answer]:
    answers = await asyncio.gather(*(fetch(client, url + path, timeout) for url in urls))
    return dict(zip(urls, answers, strict=True))


async def gather(client: httpx.AsyncClient, seeds: Sequence[str], timeout: float) -> Report:
    """Ask every node, at once; at most three rounds of ``timeout`` s each."""
    clusters = await _fetch_all(client, seeds, "/cluster", timeout)
    _, cluster = pick_cluster(seeds, clusters)
    found = targets(seeds, cluster)
    roles = await _fetch_all(client, [t.url for t in found if not t.problem], "/role", timeout)
    report = build_report(seeds, clusters, roles)
    masters = [v.url for v in report.views if v.role == Role.MASTER]
    if len(masters) > 1:  # ask again: a hand-over between two reads is not a split
        roles.update(await _fetch_all(client, masters, "/role", timeout))
        report = build_report(seeds, clusters, roles)
    return report
