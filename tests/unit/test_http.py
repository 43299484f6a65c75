"""The HTTP layer against fixed snapshots and a fake clock: no store, no I/O."""

from dataclasses import dataclass, replace

import pytest

from app.clock import FakeClock
from app.http.app import create_app, monitor_line
from app.role import Member, Role, Snapshot, Transition
from tests.support.asgi import AsgiClient


@dataclass
class Holder:
    snapshot: Snapshot


NOW = 1000.0
MASTER = Snapshot(
    node_id="n1",
    backend="etcd",
    holds_key=True,
    term=42,
    lease_valid_until=NOW + 1,
    store_ok_until=NOW + 2,
    store_reachable=True,
    leader_id="n1",
    leader_url="http://n1:8700",
    leader_term=42,
    loop_heartbeat=NOW,
    members=(Member("n1", "http://n1:8700"), Member("n2", "http://n2:8700")),
    last_transition=Transition(1.0, Role.STANDBY, Role.MASTER, "acquired the leader key"),
)
STANDBY = replace(MASTER, node_id="n2", holds_key=False, lease_valid_until=NOW + 1)
UNKNOWN = replace(STANDBY, store_ok_until=NOW - 1, store_reachable=False)


@pytest.fixture
def clock():
    return FakeClock(NOW)


def client_for(snapshot: Snapshot, clock: FakeClock) -> tuple[AsgiClient, Holder]:
    holder = Holder(snapshot)
    return AsgiClient(create_app(holder, clock, live_window=3.0)), holder


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_monitor_methods_share_the_status(method, clock):
    c, holder = client_for(MASTER, clock)
    assert c.request(method, "/monitor").status_code == 200
    holder.snapshot = STANDBY
    assert c.request(method, "/monitor").status_code == 503


def test_monitor_body_and_headers(clock):
    c, holder = client_for(MASTER, clock)
    r = c.get("/monitor")
    assert r.text == "ROLE=MASTER node=n1 term=42\n"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-vipmon-role"] == "MASTER"
    assert r.headers["x-vipmon-term"] == "42"
    holder.snapshot = STANDBY
    r = c.get("/monitor")
    assert (r.status_code, r.text) == (503, "ROLE=STANDBY node=n2 term=42 leader=n1\n")
    holder.snapshot = UNKNOWN
    r = c.get("/monitor")
    assert (r.status_code, r.text) == (503, "ROLE=UNKNOWN node=n2 term=42\n")


def test_master_turns_negative_when_the_deadline_passes_without_a_new_snapshot(clock):
    c, _ = client_for(MASTER, clock)
    assert c.get("/monitor").status_code == 200
    clock.advance(1.0)
    r = c.get("/monitor")
    assert r.status_code == 503
    assert r.text.startswith("ROLE=UNKNOWN ")


def test_body_tokens_never_contain_each_other():
    tokens = [f"ROLE={r.value}" for r in Role]
    for a in tokens:
        assert "OK" not in a.split("=", 1)[1]
        for b in tokens:
            assert a == b or a not in b


def test_monitor_line_names_the_leader_only_for_a_standby():
    assert monitor_line(STANDBY, Role.STANDBY).endswith(" leader=n1\n")
    assert "leader=" not in monitor_line(STANDBY, Role.UNKNOWN)


def test_root_answers_like_monitor_for_f5_default(clock):
    c, _ = client_for(MASTER, clock)
    r = c.get("/")
    assert (r.status_code, r.text) == (200, "ROLE=MASTER node=n1 term=42\n")


def test_trailing_slash_is_a_404_never_a_redirect(clock):
    c, _ = client_for(MASTER, clock)
    for path in ("/monitor/", "/role/", "/nope", "/health"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 404, path
        assert r.json() == {"detail": "Not Found"}


def test_monitor_standby(clock):
    c, holder = client_for(STANDBY, clock)
    assert c.get("/monitor/standby").status_code == 200
    holder.snapshot = MASTER
    assert c.get("/monitor/standby").status_code == 503
    holder.snapshot = replace(STANDBY, leader_id=None)
    assert c.get("/monitor/standby").status_code == 503
    holder.snapshot = UNKNOWN
    assert c.get("/monitor/standby").status_code == 503


def test_role_json(clock):
    c, _ = client_for(MASTER, clock)
    body = c.get("/role").json()
    assert body["node"] == "n1"
    assert body["role"] == "MASTER" and body["is_master"] is True
    assert body["term"] == 42
    assert body["leader"] == {"id": "n1", "url": "http://n1:8700"}
    assert body["lease_remaining_ms"] == 1000
    assert body["backend"] == {"name": "etcd", "reachable": True}
    assert body["last_transition"]["from"] == "STANDBY"
    assert body["last_transition"]["to"] == "MASTER"
    assert body["last_transition"]["reason"] == "acquired the leader key"


def test_cluster_marks_the_master(clock):
    c, _ = client_for(STANDBY, clock)
    body = c.get("/cluster").json()
    assert body["leader"] == "n1" and body["term"] == 42
    roles = {m["id"]: (m["role"], m["is_master"]) for m in body["members"]}
    assert roles == {"n1": ("MASTER", True), "n2": ("STANDBY", False)}


def test_health_endpoints_do_not_depend_on_the_role(clock):
    for snap in (MASTER, STANDBY):
        c, _ = client_for(snap, clock)
        assert c.get("/health/live").status_code == 200
        assert c.get("/health/ready").status_code == 200
    c, _ = client_for(UNKNOWN, clock)
    assert c.get("/health/ready").status_code == 503
    assert c.get("/health/live").status_code == 200
    clock.advance(5)
    assert c.get("/health/live").status_code == 503
