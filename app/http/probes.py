"""The probe routes as FastAPI sees them: for the spec, and for callers of the bare API.

In the running node :class:`app.probe.asgi.ProbeApp` answers ``/monitor``, ``/``
and ``/monitor/standby`` itself, before FastAPI; these routes give the same
answer (the same :class:`app.probe.asgi.Prober`) so that the spec documents them
and an API mounted without that front answers alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from app.probe.answer import PROBE_METHODS, PROBE_ROUTES
from app.probe.asgi import Prober

_TEXT = {"content": {"text/plain": {"example": "ROLE=MASTER node=n1 term=42\n"}}}
_PROBE_DOCS = {
    "/monitor": ("monitor", "200 only while this node is master"),
    "/": ("root", "Alias of /monitor, for F5's default send string"),
    "/monitor/standby": ("monitor_standby", "200 only for a healthy standby"),
}


def probe_router(prober: Prober) -> APIRouter:
    """GET, HEAD and OPTIONS on every probe path, answered by ``prober``."""
    router = APIRouter()
    for path in PROBE_ROUTES:
        name, summary = _PROBE_DOCS[path]
        endpoint = _answer(prober, path)
        for method in PROBE_METHODS:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                operation_id=f"{name}_{method.lower()}",
                summary=summary,
                response_class=PlainTextResponse,
                responses={200: _TEXT, 503: _TEXT},
            )
    return router


def _answer(prober: Prober, path: str) -> Callable[[], Awaitable[Response]]:
    async def answer() -> Response:
        status, text = prober.answer(path)
        headers = {k.decode(): v.decode() for k, v in text.headers}
        return Response(text.body, status_code=status, headers=headers)

    return answer
