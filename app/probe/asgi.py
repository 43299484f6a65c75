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
from app.probe.answer import PROBE_METHODS, PROBE_ROUTES, ProbeWords
from app.probe.counts import ProbeCounts
from app.role import NodeView


class ProbeApp:
    """Answers the probe routes itself and hands everything else to ``api``."""

    def __init__(
        self, node: NodeView, clock: Clock, api: ASGIApp, counts: ProbeCounts | None = None
    ) -> None:
        self.node = node
        self.clock = clock
        self.api = api
        self.counts = counts
        self._words = {path: ProbeWords() for path in PROBE_ROUTES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in PROBE_METHODS:
            verdict = PROBE_ROUTES.get(scope["path"])
            if verdict is not None:
                path = scope["path"]
                snap = self.node.snapshot
                role = snap.role_at(self.clock.now())
                status = 200 if verdict(snap, role) else 503
                text = self._words[path].text(snap, role)
                if self.counts is not None:
                    self.counts.add(path, status)
                await send(
                    {"type": "http.response.start", "status": status, "headers": text.headers}
                )
                await send({"type": "http.response.body", "body": text.body})
                return
        await self.api(scope, receive, send)
