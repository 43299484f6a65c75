"""The shipped rules on a real Prometheus scraping a real 3-node cluster (embedded store).

Debian's ``prometheus`` runs on a free loopback port with its own data directory,
scrapes the nodes every 0.5 s and evaluates deploy/prometheus/vipmon-rules.yml every
0.5 s. The master is killed: the recording rules show the new term, its holder and its
failover gap, and "no master" does not fire for it. Then every node goes into
maintenance (the last one with ``force``): the cluster has no master for good, and
"no master" fires, its pending period begun after that. Every dashboard query runs
without error, and ``promtool check metrics`` passes on a node's real ``/metrics``.
Every wait is bounded; only the processes started here are stopped, by PID.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.nodes import Cluster, Node, wait_for
from tests.support.ports import free_port
from tests.support.prometheus import RULES, dashboard_queries

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None or PROMTOOL is None,
        reason="needs Debian's prometheus (make system-deps)",
    ),
]
CLUSTER = "prom"
TOKEN = "operator-token-0123456789abcdef"
INTERVAL = "500ms"  # scrape and rule evaluation


class Prometheus:
    """One ``prometheus`` child process on 127.0.0.1 and its HTTP API."""

    def __init__(self, base: Path, targets: list[str]) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "vipmon",
                    "scrape_timeout": "400ms",
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        (base / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = base / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={base / 'prometheus.yml'}",
                    f"--storage.tsdb.path={base / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.log()}")
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str, what: str = "") -> list[dict]:
        """The instant query's result; fails the test on any error Prometheus reports."""
        body = self.http.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", (what, expr, body)
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str) -> list[dict]:
        body = self.http.get("/api/v1/alerts").json()
        return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    args = ["--backend", "local", "--state-dir", str(tmp_path / "state"), "--cluster", CLUSTER]
    with Cluster(tmp_path, args, env={"VIPMON_ADMIN_TOKEN": TOKEN}) as c:
        c.add_all(["n1", "n2", "n3"])
        yield c


@pytest.fixture
def prometheus(tmp_path: Path, cluster: Cluster) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path, [f"127.0.0.1:{n.port}" for n in cluster.nodes])
    try:
        wait_for(server.ready, timeout=30, interval=0.2, what="prometheus to be ready")
        yield server
    finally:
        server.stop()


def maintenance_on(node: Node, force: bool) -> None:
    r = httpx.post(
        node.url + "/admin/maintenance",
        json={"enabled": True, "force": force},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_failover_and_no_master_on_a_real_prometheus(cluster: Cluster, prometheus: Prometheus):
    sel = f'{{cluster="{CLUSTER}"}}'
    master = cluster.wait_master()
    body = master.get("/metrics").content
    checked = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def sees_master() -> bool:
        held = prometheus.query(f"vipmon:master_term{sel}")
        return [r["metric"]["node"] for r in held] == [master.node_id] and (
            prometheus.value(f"vipmon:cluster_masters:sum{sel}") == 1
        )

    wait_for(sees_master, timeout=20, interval=0.25, what="prometheus to see the master")
    wait_for(  # every node scraped at least twice: the gap histogram's zero is on record
        lambda: prometheus.value(f"count(count_over_time(vipmon_info{sel}[1m]) >= 2)") == 3,
        timeout=20,
        interval=0.25,
        what="two scrapes of every node",
    )
    term = prometheus.value(f"vipmon:cluster_term:max{sel}")
    assert term is not None and term > 0
    for title, expr in dashboard_queries(CLUSTER):  # no query of the dashboard is refused
        prometheus.query(expr, what=f"dashboard panel {title!r}")

    master.kill()  # SIGKILL, by PID: a crash
    successor = cluster.wait_master(timeout=20, exclude=master)
    new: dict[str, float] = {}

    def failover_recorded() -> bool:
        held = prometheus.query(f"vipmon:master_term{sel}")
        gaps = prometheus.value(
            f'vipmon:cluster_failover_gap_seconds_bucket:increase1h{{cluster="{CLUSTER}",le="+Inf"}}'
        )
        changes = prometheus.value(f"vipmon:cluster_failovers:changes15m{sel}")
        if len(held) != 1 or not gaps or not changes:
            return False
        new.update(term=float(held[0]["value"][1]), gaps=gaps, changes=changes)
        return held[0]["metric"]["node"] == successor.node_id

    wait_for(failover_recorded, timeout=20, interval=0.25, what="the failover in the rules")
    assert new["term"] > term
    assert new["changes"] >= 1
    within = prometheus.value(
        f'vipmon:cluster_failover_gap_seconds_bucket:increase1h{{cluster="{CLUSTER}",le="3.5"}}'
    )
    assert within == new["gaps"], "a crash's gap beyond TTL + 1.5 s"
    assert prometheus.value(f"vipmon:cluster_masters:sum{sel}") == 1
    # A normal crash failover does not page (a pending state it may have caused is
    # over: the order check at the end shows that none carried on).
    assert [a for a in prometheus.alerts("VipmonNoMaster") if a["state"] == "firing"] == []

    # The master goes for good: the standby first, then the master itself, forced.
    standby = next(n for n in cluster.nodes if n.alive() and n is not successor)
    maintenance_on(standby, force=False)
    taken_away = time.time()
    maintenance_on(successor, force=True)
    assert cluster.masters() == []

    def firing() -> list[dict]:
        return [a for a in prometheus.alerts("VipmonNoMaster") if a["state"] == "firing"]

    wait_for(lambda: bool(firing()), timeout=45, interval=0.5, what="VipmonNoMaster to fire")
    (alert,) = firing()
    assert alert["labels"]["cluster"] == CLUSTER
    assert alert["annotations"]["runbook"] == "README.md#alert-vipmonnomaster"
    active_at = datetime.fromisoformat(alert["activeAt"].replace("Z", "+00:00")).timestamp()
    assert active_at > taken_away, "pending began before the master was taken away"
    assert prometheus.alerts("VipmonSplitBrain") == []
