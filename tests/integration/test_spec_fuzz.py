"""Schemathesis drives a live node from the committed spec (openapi/openapi.json).

Every operation, admin routes included (with the token), gets generated
requests, valid and not. Schemathesis's own checks hold: every status is
documented, bodies and content types match the spec, auth is not ignored. On
top of those, no 5xx at all except a 503 from a probe route (``/monitor``,
``/``, ``/monitor/standby``, ``/health/*``), where 503 is the negative answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.support.nodes import REPO, Cluster, Node

TOKEN = "fuzz-token-0123456789abcdef"
PROBE_PATHS = {"/monitor", "/", "/monitor/standby", "/health/live", "/health/ready"}

schema = schemathesis.openapi.from_path(REPO / "openapi" / "openapi.json")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base: Path = tmp_path_factory.mktemp("fuzz")
    args = ["--state-dir", str(base / "state")]
    with Cluster(base, args, env={"VIPMON_ADMIN_TOKEN": TOKEN}) as cluster:
        solo = cluster.add("solo")
        cluster.wait_master()
        yield solo


def only_probe_503s(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx but a probe route's 503."""
    status = response.status_code
    if status >= 500 and not (status == 503 and case.path in PROBE_PATHS):
        raise AssertionError(f"{case.method} {case.path} answered {status}: {response.text}")
    return None


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_to_the_spec(case: Any, node: Node) -> None:
    case.call_and_validate(
        base_url=node.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=[not_a_server_error],
        additional_checks=[only_probe_503s],
        timeout=60,
    )
    assert node.alive()
