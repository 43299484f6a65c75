"""The admin API's access rules and error mapping, with fake commands."""

import ipaddress
import logging
from typing import Any

import pytest

from app.clock import FakeClock
from app.errors import Conflict, StoreUnavailable
from app.http.app import create_app
from app.role import Snapshot
from tests.support.asgi import AsgiClient

TOKEN = "s3cret-token-0123456789"


class Fake:
    snapshot = Snapshot(node_id="n1", backend="local")

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail: Exception | None = None

    async def _do(self, name: str, arg: Any, result: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, arg))
        if self.fail is not None:
            raise self.fail
        return result

    async def switchover(self, to):
        return await self._do(
            "switchover", to, {"from": "n1", "to": to or "n2", "term": 9, "took_ms": 12.5}
        )

    async def maintenance(self, enabled, force=False):
        return await self._do(
            "maintenance",
            (enabled, force),
            {"node": "n1", "maintenance": enabled, "handed_over_to": None},
        )

    async def pause(self, paused):
        return await self._do("pause", paused, {"paused": paused})

    async def forget(self, node):
        return await self._do("forget", node, {"node": node, "forgotten": True})


def client(fake: Fake, token: str | None = TOKEN, networks=()) -> AsgiClient:
    app = create_app(
        fake,
        FakeClock(),
        live_window=3.0,
        commands=fake,
        admin_token=token,
        allow_networks=[ipaddress.ip_network(n) for n in networks],
    )
    return AsgiClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "path",
    ["/admin/switchover", "/admin/maintenance", "/admin/pause", "/admin/resume", "/admin/forget"],
)
def test_no_token_is_401_and_wrong_token_is_403(path):
    fake = Fake()
    c = client(fake)
    r = c.post(path, json={"enabled": True})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert c.post(path, json={"enabled": True}, headers=bearer("nope")).status_code == 403
    assert (
        c.post(path, json={"enabled": True}, headers={"Authorization": TOKEN}).status_code == 403
    )  # no "Bearer"
    assert fake.calls == []


def test_right_token_runs_the_command():
    fake = Fake()
    c = client(fake)
    r = c.post("/admin/switchover", json={"to": "n3"}, headers=bearer(TOKEN))
    assert r.status_code == 200
    assert r.json() == {"from": "n1", "to": "n3", "term": 9, "took_ms": 12.5}
    assert c.post("/admin/switchover", json={}, headers=bearer(TOKEN)).json()["to"] == "n2"
    assert (
        c.post("/admin/maintenance", json={"enabled": True}, headers=bearer(TOKEN)).json()[
            "maintenance"
        ]
        is True
    )
    assert c.post("/admin/pause", headers=bearer(TOKEN)).json() == {"paused": True}
    assert c.post("/admin/resume", headers=bearer(TOKEN)).json() == {"paused": False}
    assert fake.calls == [
        ("switchover", "n3"),
        ("switchover", None),
        ("maintenance", (True, False)),
        ("pause", True),
        ("pause", False),
    ]


def test_maintenance_passes_force_and_maps_its_refusal_to_409():
    fake = Fake()
    c = client(fake)
    r = c.post("/admin/maintenance", json={"enabled": True, "force": True}, headers=bearer(TOKEN))
    assert r.status_code == 200
    reason = (
        "n1 is the master and no other node is eligible to take over; "
        "maintenance would leave the cluster without a master (use --force)"
    )
    fake.fail = Conflict(reason)
    r = c.post("/admin/maintenance", json={"enabled": True}, headers=bearer(TOKEN))
    assert (r.status_code, r.json()) == (409, {"detail": reason})
    assert fake.calls == [("maintenance", (True, True)), ("maintenance", (True, False))]


def test_forget_runs_the_command_maps_a_refusal_to_409_and_is_audited(caplog):
    fake = Fake()
    c = client(fake)
    caplog.set_level(logging.INFO, logger="vipmon.audit")
    r = c.post("/admin/forget", json={"node": "n3"}, headers=bearer(TOKEN))
    assert (r.status_code, r.json()) == (200, {"node": "n3", "forgotten": True})
    fake.fail = Conflict("n2 is alive (it has a member record): stop it first")
    r = c.post("/admin/forget", json={"node": "n2"}, headers=bearer(TOKEN))
    assert (r.status_code, r.json()["detail"]) == (409, str(fake.fail))
    assert fake.calls == [("forget", "n3"), ("forget", "n2")]
    lines = [r for r in caplog.records if r.name == "vipmon.audit"]
    assert [(r.action, r.status, r.arguments) for r in lines] == [
        ("forget", 200, {"node": "n3"}),
        ("forget", 409, {"node": "n2"}),
    ]


def test_without_a_token_the_admin_api_is_off():
    fake = Fake()
    c = client(fake, token=None)
    r = c.post("/admin/switchover", json={}, headers=bearer(TOKEN))
    assert r.status_code == 404
    assert c.get("/monitor").status_code == 503  # read endpoints stay open


def test_refusals_map_to_409_and_store_trouble_to_503():
    fake = Fake()
    c = client(fake)
    fake.fail = Conflict("target n9 is not alive")
    r = c.post("/admin/switchover", json={"to": "n9"}, headers=bearer(TOKEN))
    assert (r.status_code, r.json()) == (409, {"detail": "target n9 is not alive"})
    fake.fail = StoreUnavailable("all endpoints down")
    r = c.post("/admin/pause", headers=bearer(TOKEN))
    assert r.status_code == 503 and "store unreachable" in r.json()["detail"]


def test_malformed_body_is_422_json():
    c = client(Fake())
    r = c.post("/admin/maintenance", json={"enabled": "maybe"}, headers=bearer(TOKEN))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "enabled"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/admin/switchover", {"too": "n1"}, "too"),  # a typo must not mean "any node"
        ("/admin/switchover", {"to": 7}, "to"),
        ("/admin/switchover", {"to": "not a node id!"}, "to"),
        ("/admin/maintenance", {"enabled": 0}, "enabled"),  # no coercion of 0 to false
        ("/admin/maintenance", {"enabled": "false"}, "enabled"),
        ("/admin/maintenance", {"enabled": True, "node": "n2"}, "node"),
        ("/admin/maintenance", {"enabled": True, "force": 1}, "force"),
        ("/admin/maintenance", {"enabled": True, "force": "yes"}, "force"),
        ("/admin/maintenance", {"force": True}, "enabled"),
        ("/admin/pause", {"paused": False}, "paused"),  # /pause takes no arguments
        ("/admin/resume", {"now": True}, "now"),
        ("/admin/forget", {}, "node"),
        ("/admin/forget", {"node": "n3 and n4"}, "node"),
        ("/admin/forget", {"node": ["n3"]}, "node"),
        ("/admin/forget", {"node": "n3", "force": True}, "force"),
    ],
)
def test_unknown_keys_and_wrong_types_are_422_naming_the_field(path, body, field):
    fake = Fake()
    r = client(fake).post(path, json=body, headers=bearer(TOKEN))
    assert r.status_code == 422, r.text
    assert ["body", field] in [e["loc"] for e in r.json()["detail"]]
    assert fake.calls == []


@pytest.mark.parametrize("raw", [b'{"to":', b"not json", b"\xff\xfe"])
def test_a_body_that_is_not_json_is_400(raw):
    fake = Fake()
    headers = {**bearer(TOKEN), "content-type": "application/json"}
    r = client(fake).post("/admin/switchover", content=raw, headers=headers)
    assert r.status_code == 400
    assert isinstance(r.json()["detail"], str)
    assert fake.calls == []


def test_the_token_is_checked_before_the_body_is_read():
    fake = Fake()
    headers = {"content-type": "application/json"}
    r = client(fake).post("/admin/switchover", content=b'{"to":', headers=headers)
    assert r.status_code == 401
    assert "JSON" not in r.text


def test_every_admin_call_leaves_one_audit_line(caplog):
    fake = Fake()
    c = client(fake)
    caplog.set_level(logging.INFO, logger="vipmon.audit")
    c.post("/admin/switchover", json={"to": "n3"}, headers=bearer(TOKEN))
    c.post("/admin/switchover", json={"too": "n3"}, headers=bearer(TOKEN))
    c.post("/admin/pause", headers=bearer("wrong-" + TOKEN))
    c.post("/admin/resume")
    fake.fail = Conflict("the cluster is paused; resume it first")
    c.post("/admin/maintenance", json={"enabled": True}, headers=bearer(TOKEN))
    c.get("/role")  # not an admin call: no line
    lines = [r for r in caplog.records if r.name == "vipmon.audit"]
    assert [(r.action, r.status) for r in lines] == [
        ("switchover", 200),
        ("switchover", 422),
        ("pause", 403),
        ("resume", 401),
        ("maintenance", 409),
    ]
    assert all(r.client.startswith("127.0.0.1:") for r in lines)
    assert lines[0].arguments == {"to": "n3"}
    assert "from=n1 to=n3" in lines[0].outcome
    assert "too" in lines[1].outcome
    assert lines[4].arguments == {"enabled": True, "force": False}
    assert "paused" in lines[4].outcome
    assert all(TOKEN not in r.getMessage() for r in lines)


def test_allow_cidr_guards_every_path():
    # httpx's ASGI transport reports the client as 127.0.0.1.
    inside = client(Fake(), networks=["127.0.0.0/8"])
    assert inside.get("/monitor").status_code == 503
    outside = client(Fake(), networks=["10.0.0.0/8", "::1/128"])
    for path in ("/monitor", "/role", "/admin/pause"):
        r = outside.get(path)
        assert r.status_code == 403, path
        assert r.json() == {"detail": "client network not allowed"}


def test_the_token_never_appears_in_role_or_errors():
    fake = Fake()
    c = client(fake)
    assert TOKEN not in c.get("/role").text
    assert TOKEN not in c.post("/admin/pause", headers=bearer("x" + TOKEN)).text
