"""Three ``vipmon run`` processes on one host sharing the embedded store."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import scenarios
from tests.support.nodes import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, ["--backend", "local", "--state-dir", str(tmp_path / "state")]) as c:
        for i in (1, 2, 3):
            c.add(f"n{i}")
        yield c


def test_exactly_one_master(cluster: Cluster):
    scenarios.one_master(cluster)


def test_sigkill_failover(cluster: Cluster):
    scenarios.sigkill_failover(cluster)


def test_sigterm_handover(cluster: Cluster):
    scenarios.sigterm_handover(cluster)


def test_sigstop_master_longer_than_ttl(cluster: Cluster):
    scenarios.sigstop_master(cluster, ttl=2)


def test_embedded_default_becomes_master_alone(tmp_path: Path):
    with Cluster(tmp_path, ["--state-dir", str(tmp_path / "state")]) as c:
        node = c.add("solo")
        assert c.wait_master() is node
        assert node.role()["backend"] == {
            "name": "local",
            "reachable": True,
            "version": f"sqlite {sqlite3.sqlite_version}",
        }
