"""The committed OpenAPI spec is rendered from the app, never written by hand."""

from __future__ import annotations

import json

from app.clock import FakeClock
from app.http.app import create_app
from app.role import Snapshot


class _Blank:
    snapshot = Snapshot(node_id="spec", backend="local")


def render_spec() -> str:
    """The spec as stable, sorted JSON text."""
    app = create_app(_Blank(), FakeClock(), live_window=3.0)
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
