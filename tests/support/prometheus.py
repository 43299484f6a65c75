"""The files of deploy/prometheus, as the rule, dashboard and Prometheus tests read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RULES = PROM / "vipmon-rules.yml"


def dashboard() -> dict[str, Any]:
    return dict(json.loads((PROM / "grafana-dashboard.json").read_text()))


def dashboard_queries(cluster: str) -> list[tuple[str, str]]:
    """Every panel's expression as Grafana would send it: (panel title, query), with the
    ``cluster`` variable set and ``$__rate_interval`` as 1 minute."""
    return [
        (
            panel["title"],
            target["expr"].replace("$cluster", cluster).replace("$__rate_interval", "1m"),
        )
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]
