"""An outside observer: probe every node's /monitor and check the records.

The checker knows nothing of the nodes' internals; it reads only what each
probe saw: node, request start, response end, status and term.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import httpx

from tests.support.nodes import wait_for

_TERM = re.compile(r"\bterm=(\d+)\b")


@dataclass(frozen=True)
class Probe:
    node: str
    start: float
    end: float
    status: int  # 0: no answer
    term: int
    body: str


class Prober:
    """One thread per node, each probing about every ``interval`` s until stopped.

    ``verify`` is the TLS context for https nodes; ``enter``, if given, is entered by
    each probing thread first (e.g. a network namespace's ``Host.entered``).
    """

    def __init__(
        self,
        nodes: Sequence[tuple[str, str]],
        interval: float = 0.01,
        max_seconds: float = 600.0,
        *,
        verify: ssl.SSLContext | bool = True,
        enter: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self.nodes = list(nodes)
        self.verify = verify
        self.enter = enter
        self.interval = interval
        self.max_seconds = max_seconds
        self.records: list[Probe] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, name: str, url: str) -> None:
        self.nodes.append((name, url))
        if self._threads:
            self._spawn(name, url)

    def _spawn(self, name: str, url: str) -> None:
        t = threading.Thread(target=self._run, args=(name, url), daemon=True)
        t.start()
        self._threads.append(t)

    def _run(self, name: str, url: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        with self.enter(), httpx.Client(timeout=0.3, verify=self.verify) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                start = time.monotonic()
                try:
                    r = client.get(url + "/monitor")
                    status, body = r.status_code, r.text
                except httpx.HTTPError as exc:
                    status, body = 0, type(exc).__name__
                end = time.monotonic()
                m = _TERM.search(body)
                with self._lock:
                    self.records.append(
                        Probe(name, start, end, status, int(m.group(1)) if m else 0, body.strip())
                    )
                self._stop.wait(max(0.0, self.interval - (end - start)))

    def wait_positive(self, node: str, after: float = 0.0, timeout: float = 15.0) -> None:
        """Block until a 200 from ``node`` that began after ``after`` is recorded."""

        def seen() -> bool:
            with self._lock:
                return any(
                    p.node == node and p.status == 200 and p.start > after for p in self.records
                )

        wait_for(seen, timeout=timeout, what=f"a 200 from {node} in the probe records")

    def wait_for_count(self, count: int, timeout: float = 15.0) -> None:
        """Block until ``count`` probes are recorded (bounded by ``timeout``)."""

        def enough() -> bool:
            with self._lock:
                return len(self.records) >= count

        wait_for(enough, timeout=timeout, what=f"{count} probes")

    def start(self) -> Prober:
        for name, url in self.nodes:
            self._spawn(name, url)
        return self

    def stop(self) -> list[Probe]:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        with self._lock:
            return sorted(self.records, key=lambda p: p.start)

    def __enter__(self) -> Prober:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def violations(records: Sequence[Probe]) -> list[str]:
    """Every breach of "never two positive nodes at the same instant" the records prove.

    * A term is answered positive by one node only.
    * No positive with term X begins after a positive with a newer term Y > X
      has ended (a stale positive: two masters at one instant).
    * Two positives from different nodes whose request windows are disjoint in
      the wrong order of their terms are caught by the rule above; windows that
      overlap cannot be ordered from outside and are not counted.
    """
    found: list[str] = []
    positives = [p for p in records if p.status == 200]
    owner: dict[int, str] = {}
    for p in positives:
        if p.term <= 0:
            found.append(f"positive without a term: {p}")
            continue
        if owner.setdefault(p.term, p.node) != p.node:
            found.append(f"term {p.term} answered positive by {owner[p.term]} and {p.node}")
    # For each positive, the newest term whose positive ended before it began.
    by_end = sorted(positives, key=lambda p: p.end)
    newest_ended = 0
    i = 0
    for p in sorted(positives, key=lambda p: p.start):
        while i < len(by_end) and by_end[i].end < p.start:
            newest_ended = max(newest_ended, by_end[i].term)
            i += 1
        if p.term < newest_ended:
            found.append(
                f"stale positive: {p.node} term {p.term} began at {p.start:.3f} "
                f"after term {newest_ended} had answered positive"
            )
    return found


def positive_terms(records: Sequence[Probe]) -> dict[int, str]:
    """Term -> node, for every term seen positive."""
    return {p.term: p.node for p in records if p.status == 200}
