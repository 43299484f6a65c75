"""The chaos run's planned hand-overs: switchovers through the admin API, under drain.

The nodes run with ``--drain-time`` :data:`DRAIN` (which SIGTERM honours too)
and an admin token. Two faults, both sent to the master, the one that must
drain:

* ``switchover``: ``POST /admin/switchover`` to a named node or to any
  (``{}``), waited for; the outcome goes in the fault's detail;
* ``switchover, cut in drain``: the same request in a background thread and,
  once the master answers ``ROLE=DRAINING``, its links to every etcd member
  blackholed for U(TTL + 0.2, TTL + 2) s, so its release fails mid-drain. The
  master is cut off from the cut onwards: negative within the TTL of the cut.
  The request ends with the new master, a 409 or a 503; that goes in the detail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from random import Random
from typing import Any

import httpx

from tests.chaos.bounds import DRAIN, NODE_BOUND, SWITCHOVER_TIMEOUT, TTL
from tests.support.checker import Fault
from tests.support.faultproxy import BLACKHOLE, FaultProxy, ProxyHub
from tests.support.nodes import Node


class HandoverFaults:
    """The switchover faults of :class:`tests.chaos.engine.Chaos` (which provides these)."""

    rng: Random
    hub: ProxyHub
    proxies: dict[str, list[FaultProxy]]
    admin_token: str
    live: Callable[[], list[Node]]
    window: Callable[..., tuple[float, float, float]]

    def switchover(self, kind: str, master: Node) -> Fault:
        to = self._target(master)
        t = time.monotonic()
        outcome = self._request_switchover(master, to)
        detail = f"to {to or 'any'}: {outcome}"
        return Fault(kind, master.node_id, t, time.monotonic(), NODE_BOUND, detail=detail)

    def switchover_cut(self, kind: str, master: Node) -> Fault:
        to = self._target(master)
        proxies = self.proxies[master.node_id]
        with ThreadPoolExecutor(1, thread_name_prefix="switchover") as pool:
            t = time.monotonic()
            reply = pool.submit(self._request_switchover, master, to)
            drained = self._wait_draining(master, within=2 * DRAIN + 1)
            cut, healed, held = self.window(
                lambda: self.hub.set(proxies, BLACKHOLE),
                lambda: self.hub.heal(proxies),
                TTL + 0.2,
                TTL + 2.0,
            )
            try:
                outcome = reply.result(timeout=SWITCHOVER_TIMEOUT + 10)
            except FutureTimeout:  # the thread ends with httpx's own timeout
                outcome = f"no reply within {SWITCHOVER_TIMEOUT + 10:g} s"
        seen = f"cut {cut - t:.2f} s after the request" + ("" if drained else ", no drain seen")
        return Fault(
            kind, master.node_id, t, healed, NODE_BOUND,
            cut_off=(master.node_id,), grace=round(cut - t, 3) + TTL,
            detail=f"to {to or 'any'}: {outcome}; {seen}, held {held:.2f} s",
        )  # fmt: skip

    def _target(self, master: Node) -> str | None:
        """A named standby half the time, else None (the master picks)."""
        standbys = [n.node_id for n in self.live() if n is not master]
        if standbys and self.rng.random() < 0.5:
            return self.rng.choice(standbys)
        return None

    def _request_switchover(self, master: Node, to: str | None) -> str:
        """POST /admin/switchover to ``master``; a one-line outcome."""
        body: dict[str, Any] = {"to": to} if to else {}
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        try:
            reply = httpx.post(
                master.url + "/admin/switchover",
                json=body,
                headers=headers,
                timeout=SWITCHOVER_TIMEOUT + 5,
            )
        except httpx.HTTPError as exc:
            return f"no reply ({type(exc).__name__})"
        try:
            data = reply.json()
        except ValueError:
            data = {}
        if reply.status_code == 200:
            return f"200 {data.get('from')}->{data.get('to')} term {data.get('term')}"
        return f"{reply.status_code} {str(data.get('detail', ''))[:80]}"

    @staticmethod
    def _wait_draining(node: Node, within: float) -> bool:
        """Poll ``node`` until it answers ROLE=DRAINING (True) or ``within`` s pass."""
        deadline = time.monotonic() + within
        for _ in range(int(within / 0.01) + 1):
            if node.monitor()[1].startswith("ROLE=DRAINING"):
                return True
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        return False
