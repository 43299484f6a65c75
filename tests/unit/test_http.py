"""The HTTP layer against fixed snapshots and a fake clock: no store, no I/O."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from app.clock import FakeClock
from app.http.app import create_api, create_app
from app.metrics import Metrics, NodeInfo
from app.probe.answer import monitor_line
from app.probe.asgi import ProbeApp
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
    members=(
        Member("n1", "http://n1:8700", started_at=1_780_000_000.0),
        Member("n2", "http://n2:8700"),
    ),
    last_transition=Transition(
        1_780_000_000.25, Role.STANDBY, Role.MASTER, "acquired the leader key"
    ),
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
    assert body["url"] == "" and body["started_at"] == "1970-01-01T00:00:00Z"
    assert body["role"] == "MASTER" and body["is_master"] is True
    assert body["term"] == 42
    assert body["leader"] == {"id": "n1", "url": "http://n1:8700"}
    assert body["lease_remaining_ms"] == 1000
    assert body["backend"] == {"name": "etcd", "reachable": True, "version": ""}
    assert body["last_transition"]["from"] == "STANDBY"
    assert body["last_transition"]["to"] == "MASTER"
    assert body["last_transition"]["reason"] == "acquired the leader key"
    # ISO 8601 in UTC, as every time in a JSON answer
    at = datetime.fromisoformat(body["last_transition"]["at"])
    assert at == datetime.fromtimestamp(1_780_000_000.25, UTC) and at.utcoffset() == timedelta(0)


def test_role_names_this_process_by_its_url_and_start(clock):
    snap = replace(MASTER, advertise_url="http://n1:8700", started_at=1_780_000_000.5)
    c, _ = client_for(snap, clock)
    body = c.get("/role").json()
    assert (body["url"], body["started_at"]) == ("http://n1:8700", "2026-05-28T20:26:40.500000Z")


def test_role_names_the_store_server_version(clock):
    c, _ = client_for(replace(MASTER, store_version="etcd 3.4.23"), clock)
    backend = c.get("/role").json()["backend"]
    assert backend == {"name": "etcd", "reachable": True, "version": "etcd 3.4.23"}


def test_cluster_marks_the_master(clock):
    c, _ = client_for(STANDBY, clock)
    body = c.get("/cluster").json()
    assert body["leader"] == "n1" and body["term"] == 42
    roles = {m["id"]: (m["role"], m["is_master"]) for m in body["members"]}
    assert roles == {"n1": ("MASTER", True), "n2": ("STANDBY", False)}
    started = datetime.fromisoformat(body["members"][0]["started_at"])
    assert started == datetime.fromtimestamp(1_780_000_000.0, UTC)


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


class Refuses:
    """An API that fails the test if a probe ever reaches it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.calls.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("path", ["/monitor", "/", "/monitor/standby"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_the_probe_app_answers_probes_without_the_api(path, method, clock):
    api = Refuses()
    holder = Holder(MASTER)
    c = AsgiClient(ProbeApp(holder, clock, api))
    assert c.request(method, path).status_code in (200, 503)
    assert api.calls == []
    assert c.request("POST", path).status_code == 418
    assert c.get("/role").status_code == 418
    assert api.calls == [f"POST {path}", "GET /role"]


@pytest.mark.parametrize("snap", [MASTER, STANDBY, UNKNOWN], ids=["master", "standby", "unknown"])
@pytest.mark.parametrize("path", ["/monitor", "/", "/monitor/standby"])
def test_the_probe_app_answers_as_the_documented_routes(snap, path, clock):
    fast = AsgiClient(ProbeApp(Holder(snap), clock, Refuses()))
    documented = AsgiClient(create_api(Holder(snap), clock, live_window=3.0))
    a, b = fast.get(path), documented.get(path)
    assert (a.status_code, a.text) == (b.status_code, b.text)
    for name in ("content-type", "content-length", "cache-control", "x-vipmon-role"):
        assert a.headers[name] == b.headers[name], name
    assert a.headers["x-vipmon-term"] == b.headers["x-vipmon-term"]


def test_the_probe_text_follows_each_new_snapshot(clock):
    c, holder = client_for(MASTER, clock)
    assert c.get("/monitor").text == "ROLE=MASTER node=n1 term=42\n"
    holder.snapshot = replace(MASTER, term=43, leader_term=43)
    r = c.get("/monitor")
    assert (r.text, r.headers["x-vipmon-term"]) == ("ROLE=MASTER node=n1 term=43\n", "43")
    clock.advance(1.5)  # same snapshot, later instant: the lease has lapsed
    assert c.get("/monitor").status_code == 503


def test_probe_answers_are_counted_by_route_and_status(clock):
    holder = Holder(MASTER)
    metrics = Metrics(holder, clock, NodeInfo("c1", "n1", 2.0))
    c = AsgiClient(create_app(holder, clock, live_window=3.0, metrics=metrics))
    c.get("/monitor")
    c.request("HEAD", "/")
    holder.snapshot = STANDBY
    c.get("/monitor")
    c.get("/monitor/standby")
    assert metrics.probes.snapshot() == {
        ("/monitor", 200): 1,
        ("/", 200): 1,
        ("/monitor", 503): 1,
        ("/monitor/standby", 200): 1,
    }


def test_docs_routes_are_off_unless_asked_for(clock):
    off, _ = client_for(MASTER, clock)
    assert off.get("/docs").status_code == 404
    assert off.get("/redoc").status_code == 404
    assert off.get("/openapi.json").status_code == 200
    on = AsgiClient(create_app(Holder(MASTER), clock, live_window=3.0, docs=True))
    assert on.get("/docs").status_code == 200
    assert on.get("/redoc").status_code == 200
