"""Cross-origin reads (app/http/cors.py): members' pages may read the JSON, nobody else."""

from dataclasses import dataclass, replace

import pytest

from app.clock import FakeClock
from app.http.app import create_app
from app.http.cors import READ_PATHS, origin_of, peer_origins
from app.role import Member, Snapshot
from tests.support.asgi import AsgiClient

TOKEN = "cors-token-0123456789"
NOW = 1000.0
SNAP = Snapshot(
    node_id="n1",
    backend="local",
    store_reachable=True,
    store_ok_until=NOW + 2,
    loop_heartbeat=NOW,
    members=(Member("n1", "http://10.0.1.1:8700"), Member("n2", "http://10.0.1.2:8700")),
    # n3 is dead (no member record) but was seen: its page may still read us.
    peer_urls=frozenset(
        {"http://10.0.1.1:8700", "http://10.0.1.2:8700", "https://N3.example:443/"}
    ),
)
N2 = "http://10.0.1.2:8700"


@dataclass
class Holder:
    snapshot: Snapshot

    async def switchover(self, to):
        return {"from": "n1", "to": "n2", "term": 2, "took_ms": 1.0}

    async def maintenance(self, enabled, force=False):
        return {"node": "n1", "maintenance": enabled, "handed_over_to": None}

    async def pause(self, paused):
        return {"paused": paused}


def client(snapshot: Snapshot = SNAP) -> tuple[AsgiClient, Holder]:
    holder = Holder(snapshot)
    app = create_app(holder, FakeClock(NOW), live_window=3.0, commands=holder, admin_token=TOKEN)
    return AsgiClient(app), holder


def no_cors(response) -> bool:
    return not any(k.lower().startswith("access-control-") for k in response.headers) and (
        "origin" not in response.headers.get("vary", "").lower()
    )


@pytest.mark.parametrize("path", sorted(READ_PATHS))
def test_a_known_origin_may_read_each_read_endpoint(path):
    c, _ = client()
    r = c.get(path, headers={"Origin": N2})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == N2
    assert r.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in r.headers


def test_a_dead_members_origin_is_still_known():
    c, _ = client()
    r = c.get("/role", headers={"Origin": "https://n3.example"})
    assert r.headers["access-control-allow-origin"] == "https://n3.example"


def test_a_negative_answer_of_a_read_path_carries_it_too():
    # The page must see a 503 (and a 404 from a node without /history, a 422) as such.
    c, _ = client(replace(SNAP, store_reachable=False))
    r = c.get("/health/ready", headers={"Origin": N2})
    assert r.status_code == 503
    assert r.headers["access-control-allow-origin"] == N2
    r = c.get("/history?limit=0", headers={"Origin": N2})
    assert r.status_code == 422
    assert r.headers["access-control-allow-origin"] == N2


@pytest.mark.parametrize(
    "origin",
    [
        "http://10.0.1.9:8700",  # not a member
        "http://10.0.1.2:8701",  # a member's host, another port
        "https://10.0.1.2:8700",  # another scheme
        "http://10.0.1.2:8700/",  # not an origin as a browser writes it
        "HTTP://10.0.1.2:8700",
        "null",
        "",
    ],
)
def test_an_unknown_origin_gets_nothing(origin):
    c, _ = client()
    r = c.get("/role", headers={"Origin": origin})
    assert r.status_code == 200
    assert no_cors(r), r.headers


def test_no_origin_header_gets_nothing():
    c, _ = client()
    for path in READ_PATHS:
        assert no_cors(c.get(path)), path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/pause"),
        ("GET", "/admin/pause"),
        ("OPTIONS", "/admin/pause"),
        ("OPTIONS", "/role"),
        ("POST", "/role"),
        ("GET", "/monitor"),
        ("GET", "/metrics"),
        ("GET", "/ui"),
        ("GET", "/openapi.json"),
        ("GET", "/role/"),
    ],
)
def test_other_paths_and_methods_get_nothing_even_from_a_member(method, path):
    c, _ = client()
    headers = {"Origin": N2, "Authorization": f"Bearer {TOKEN}"}
    r = c.request(method, path, headers=headers)
    assert no_cors(r), (method, path, r.status_code, r.headers)


def test_the_admin_command_itself_is_not_readable_cross_origin_and_still_runs():
    c, _ = client()
    r = c.post("/admin/pause", headers={"Origin": N2, "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert no_cors(r)


def test_a_repeated_origin_header_gets_nothing():
    c, _ = client()
    r = c.get("/role", headers=[("Origin", N2), ("Origin", N2)])
    assert no_cors(r)


def test_a_url_seen_later_is_allowed_from_the_next_snapshot_on():
    c, holder = client()
    newcomer = "http://10.0.1.4:8700"
    assert no_cors(c.get("/role", headers={"Origin": newcomer}))
    holder.snapshot = replace(SNAP, peer_urls=SNAP.peer_urls | {newcomer + "/"})
    r = c.get("/role", headers={"Origin": newcomer})
    assert r.headers["access-control-allow-origin"] == newcomer


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://10.0.1.1:8700", "http://10.0.1.1:8700"),
        ("http://10.0.1.1:8700/some/path?q=1", "http://10.0.1.1:8700"),
        ("HTTP://Node-1.Example:80", "http://node-1.example"),
        ("https://n1.example:443", "https://n1.example"),
        ("https://n1.example:80", "https://n1.example:80"),
        ("http://[0:0::1]:8700", "http://[::1]:8700"),
        ("ftp://n1.example", None),
        ("http://user:pw@n1.example", None),
        ("http://n1.example:99999", None),
        ("not a url", None),
        ("", None),
    ],
)
def test_origin_of_writes_an_origin_as_browsers_do(url, origin):
    assert origin_of(url) == origin


def test_peer_origins_drops_what_is_no_origin():
    urls = frozenset({"http://a:1", "http://a:1/", "mailto:x@y", "https://b"})
    assert peer_origins(urls) == {"http://a:1", "https://b"}
