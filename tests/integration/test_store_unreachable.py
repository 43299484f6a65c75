"""An etcd that cannot be reached at start is not a setting error."""

from pathlib import Path

from tests.support.nodes import Cluster
from tests.support.ports import free_port
from tests.support.probe import Prober


def test_node_starts_negative_and_keeps_trying(tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"
    with Cluster(tmp_path, ["--backend", "etcd", "--etcd-endpoints", dead]) as c:
        node = c.add("n1")
        with Prober([(node.node_id, node.url)], max_seconds=30) as p:
            p.wait_for_count(50)
        records = p.stop()
        assert records and all(r.status == 503 for r in records)
        assert all(r.body.startswith("ROLE=UNKNOWN node=n1") for r in records)
        assert node.get("/health/ready").status_code == 503
        assert node.get("/health/live").status_code == 200
        role = node.role()
        assert (role["backend"]["name"], role["backend"]["reachable"]) == ("etcd", False)
        assert node.alive()
        assert "Traceback" not in node.log()
