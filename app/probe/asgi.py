"""The HTTP probe routes as a bare ASGI application in front of the JSON API.

``/monitor``, ``/`` and ``/monitor/standby`` with GET, HEAD or OPTIONS are
answered here, on the event loop, from the node's snapshot and the clock:
no routing table, no dependency solving, no worker thread. Every other
request, a probe path with another method included, goes to ``api`` (the
FastAPI application, which also documents the probe routes in the spec).

The answer is the same as the API's own probe routes: a one-line text body,
200 or 503, ``Cache-Control: no-store`` and the ``X-Vipmon-Role`` and
``X-Vipmon-Term`` headers.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.clock import Clock
from app.probe.answer import PROBE_METHODS, PROBE_ROUTES, ProbeText, ProbeWords
from app.probe.counts import ProbeCounts
from app.role import NodeView


class Prober:
    """One probe answer: the status and text for a route at this instant, counted."""

    def __init__(self, node: NodeView, clock: Clock, counts: ProbeCounts | None = None) -> None:
        self.node = node
        self.clock = clock
        self.counts = counts
        self._words = ProbeWords()  # the text depends on the snapshot and role, not the route

    def answer(self, path: str) -> tuple[int, ProbeText]:
        """``path`` must be a key of :data:`PROBE_ROUTES`."""
        snap = self.node.snapshot
        role = snap.role_at(self.clock.now())
        status = 200 if PROBE_ROUTES[path](snap, role) else 503
        if self.counts is not None:
            self.counts.add(path, status)
        return status, self._words.text(snap, role)


class ProbeApp:
    """Answers the probe routes itself and hands everything else to ``api``."""

    def __init__(
        self, node: NodeView, clock: Clock, api: ASGIApp, counts: ProbeCounts | None = None
    ) -> None:
        self.prober = Prober(node, clock, counts)
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in PROBE_METHODS
            and scope["path"] in PROBE_ROUTES
        ):
            status, text = self.prober.answer(scope["path"])
            await send({"type": "http.response.start", "status": status, "headers": text.headers})
            await send({"type": "http.response.body", "body": text.body})
            return
        await self.api(scope, receive, send)
