"""The two answers that are not JSON: the status page ``/ui`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from app.http.ui import StatusPage
from app.metrics import Metrics
from app.role import NodeView


def ui_router(node: NodeView) -> APIRouter:
    """``/ui``: the page, read once here, with headers (its CSP) from each snapshot."""
    router = APIRouter()
    page = StatusPage.load()

    @router.get(
        "/ui",
        response_class=HTMLResponse,
        summary="The live status page (HTML)",
        responses={200: {"content": {"text/html": {}}}},
    )
    async def status_page() -> Response:
        return HTMLResponse(page.body, headers=page.headers(node.snapshot))

    return router


def metrics_router(metrics: Metrics) -> APIRouter:
    """``/metrics`` in the Prometheus text format."""
    router = APIRouter()

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics",
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics_text() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return router
