"""The committed OpenAPI spec is rendered from the app, never written by hand."""

from __future__ import annotations

import json
from typing import Any

from app.clock import FakeClock
from app.http.app import create_api
from app.metrics import Metrics, NodeInfo
from app.role import Snapshot


class _Blank:
    snapshot = Snapshot(node_id="spec", backend="local")

    async def switchover(self, to: str | None) -> dict[str, Any]:
        raise NotImplementedError

    async def maintenance(self, enabled: bool, force: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    async def pause(self, paused: bool) -> dict[str, Any]:
        raise NotImplementedError

    async def forget(self, node: str) -> dict[str, Any]:
        raise NotImplementedError


def render_spec() -> str:
    """The spec as stable, sorted JSON text, with the /admin routes included."""
    blank, clock = _Blank(), FakeClock()
    app = create_api(
        blank,
        clock,
        live_window=3.0,
        commands=blank,
        admin_token="x" * 16,
        metrics=Metrics(blank, clock, NodeInfo("vipmon", "spec", 2.0)),
    )
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
