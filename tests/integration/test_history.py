"""``/history`` and ``vipmon history`` across a switchover, a maintenance and a crash.

On both backends, with real ``vipmon run`` processes: every term the test saw
is in the history of every live node, newest first, each with how it ended and
the gap before the next; nothing is lost and the story is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from app.cli import main
from tests.support.etcd import ETCD_BIN, EtcdCluster
from tests.support.nodes import Cluster, Node, wait_for

TOKEN = "history-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["local", "etcd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    if request.param == "local":
        yield ["--backend", "local", "--state-dir", str(tmp_path / "state")]
        return
    if not ETCD_BIN.exists():
        pytest.skip("needs Debian's etcd-server")
    with EtcdCluster(tmp_path / "etcd", size=1) as etcd:
        yield ["--backend", "etcd", "--etcd-endpoints", ",".join(etcd.client_urls)]


def post(node: Node, path: str, body: dict) -> httpx.Response:
    return httpx.post(node.url + path, json=body, headers=AUTH, timeout=60)


def ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def terms(node: Node) -> list[dict]:
    return node.get("/history?limit=10").json()["terms"]


def test_history_tells_each_term_and_how_it_ended(
    backend: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    args = [*backend, "--lease-ttl", "3"]
    with Cluster(tmp_path, args, env={"VIPMON_ADMIN_TOKEN": TOKEN}) as cluster:
        cluster.add_all(["n1", "n2", "n3"])
        wait_for(
            lambda: all(len(n.get("/cluster").json()["members"]) == 3 for n in cluster.nodes),
            timeout=15,
            what="three members everywhere",
        )
        first = cluster.wait_master()
        seen = [(first.role()["term"], first.node_id)]

        moved = post(first, "/admin/switchover", {})
        assert moved.status_code == 200, moved.text
        second = next(n for n in cluster.nodes if n.node_id == moved.json()["to"])
        assert cluster.wait_master() is second
        seen.append((second.role()["term"], second.node_id))

        wait_for(
            lambda: len(second.get("/cluster").json()["members"]) == 3,
            timeout=15,
            what="the new master to see every member",
        )
        maint = post(second, "/admin/maintenance", {"enabled": True})
        assert maint.status_code == 200, maint.text
        third = next(n for n in cluster.nodes if n.node_id == maint.json()["handed_over_to"])
        assert cluster.wait_master() is third
        seen.append((third.role()["term"], third.node_id))

        third.kill()
        fourth = cluster.wait_master(exclude=third)
        assert fourth is not second, "the node in maintenance never takes the role"
        seen.append((fourth.role()["term"], fourth.node_id))
        reason = fourth.role()["last_transition"]["reason"]
        assert f"after term {seen[2][0]} of {third.node_id}, which ended: lease expired" in reason

        live = [n for n in cluster.nodes if n.alive()]
        wanted = [term for term, _ in reversed(seen)]

        def told() -> bool:
            views = [terms(n) for n in live]
            return all(
                [t["term"] for t in v][: len(wanted)] == wanted and v[3]["how"] is not None
                for v in views
            ) and all(v == views[0] for v in views)

        wait_for(told, timeout=15, interval=0.1, what="every live node to tell the same history")
        history = terms(live[0])[: len(seen)]
        assert [(t["term"], t["node"]) for t in history] == list(reversed(seen))
        current, crashed, maintained, switched = history
        assert current["ended"] is None and current["how"] is None
        assert (crashed["how"], crashed["to"]) == ("lease expired", None)
        assert (maintained["how"], maintained["to"]) == ("maintenance", third.node_id)
        assert (switched["how"], switched["to"]) == ("switchover", second.node_id)
        for later in (current, crashed, maintained):
            assert later["failover_gap_ms"] is not None
            assert later["began"] is not None
        assert all(t["began"] < t["ended"] for t in (crashed, maintained, switched))
        # After the crash the gap is a range: from the key's deletion as the new master
        # saw it, back to that less the TTL (3 s) and the 0.5 s of expiry slack, but never
        # to before the crashed term began.
        low, high = current["failover_gap_ms"], current["failover_gap_max_ms"]
        began = {t["term"]: ms(t["began"]) for t in (current, crashed)}
        seen = began[current["term"]] - low
        earliest = max(seen - 3500, began[crashed["term"]])
        assert high is not None and abs(high - (began[current["term"]] - earliest)) <= 1
        assert low < high
        assert crashed["failover_gap_max_ms"] is None  # after a planned hand-over: exact
        assert maintained["failover_gap_max_ms"] is None

        assert main(["history", "--url", live[0].url, "--limit", "4"]) == 0
        table = capsys.readouterr().out
        assert f"maintenance to {third.node_id}" in table
        assert f"switchover to {second.node_id}" in table
        assert "lease expired" in table and "holding" in table
        assert f"{low / 1000:.3f} to {high / 1000:.3f} s" in table
