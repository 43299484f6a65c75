"""``maintenance on`` through the admin commands, on the in-memory store and a fake clock.

Issue 20, finding 9: maintenance of the last node that could be master is
refused (409) unless forced, and the refusal writes nothing. Finding 15: only a
node that held the key and handed it over reports ``handed_over_to``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.election.admin import AdminCommands
from app.election.control import maintenance_key
from app.election.elector import Elector
from app.errors import Conflict
from app.http.app import create_app
from app.settings import load_settings
from app.store.memory import MemoryStore
from tests.chaos.sim import run_virtual
from tests.unit.test_handover import KEY, World

TOKEN = "s3cret-token-0123456789"


def world(*priorities: int) -> World:
    """Nodes n1, n2, ... with these priorities (0: never master)."""
    w = World(0)
    for i, priority in enumerate(priorities, start=1):
        node_id = f"n{i}"
        cfg = {"node_id": node_id, "advertise_url": f"http://{node_id}", "priority": priority}
        w.nodes[node_id] = Elector(load_settings(cfg, env={}), MemoryStore(w.data), w.clock)
    return w


async def join(w: World, master: str | None) -> None:
    """Every node joins (lease, member record); ``master``, if any, takes the role."""
    for e in w.nodes.values():
        await e.ensure_lease()
        await e.publish_member()
    for e in w.nodes.values():
        await e.refresh_members()
    if master is not None:
        await w.nodes[master].campaign()
        for e in w.nodes.values():
            await e.observe(0.0)
    assert w.masters() == ([master] if master else [])


def maintenance(w: World, node_id: str, **kwargs: Any) -> dict[str, Any]:
    return run_virtual(w.clock, AdminCommands(w.nodes[node_id]).maintenance(True, **kwargs))


def in_maintenance(w: World, node_id: str) -> bool:
    return maintenance_key("vipmon", node_id) in w.data.keys


def test_maintenance_of_the_last_eligible_master_is_refused_and_writes_nothing():
    w = world(100, 0)
    run_virtual(w.clock, join(w, "n1"))
    revision = w.data.revision
    with pytest.raises(Conflict) as refused:
        maintenance(w, "n1")
    assert str(refused.value) == (
        "n1 is the master and no other node is eligible to take over; "
        "maintenance would leave the cluster without a master (use --force)"
    )
    assert not in_maintenance(w, "n1")
    assert w.data.revision == revision, "the refusal wrote to the store"
    assert w.masters() == ["n1"] and w.nodes["n1"].holds_key


def test_forced_maintenance_of_the_last_eligible_master_releases_the_role():
    w = world(100, 0)
    run_virtual(w.clock, join(w, "n1"))
    result = maintenance(w, "n1", force=True)
    assert result == {"node": "n1", "maintenance": True, "handed_over_to": None}
    assert in_maintenance(w, "n1")
    assert KEY not in w.data.keys and w.masters() == []


def test_maintenance_of_the_only_candidate_without_a_master_is_refused_unless_forced():
    w = world(100, 0)
    run_virtual(w.clock, join(w, None))
    revision = w.data.revision
    with pytest.raises(Conflict) as refused:
        maintenance(w, "n1")
    assert "no master" in str(refused.value) and "(use --force)" in str(refused.value)
    assert w.data.revision == revision and not in_maintenance(w, "n1")
    result = maintenance(w, "n1", force=True)
    assert result == {"node": "n1", "maintenance": True, "handed_over_to": None}
    assert in_maintenance(w, "n1")


def test_a_standby_beside_the_last_eligible_master_may_go_into_maintenance():
    """Finding 15 too: a standby hands nothing over, so it names nobody."""
    w = world(100, 100)
    run_virtual(w.clock, join(w, "n1"))
    result = maintenance(w, "n2")
    assert result == {"node": "n2", "maintenance": True, "handed_over_to": None}
    assert in_maintenance(w, "n2") and w.masters() == ["n1"]


def test_a_standby_that_is_not_a_candidate_may_go_into_maintenance_without_a_master():
    w = world(0, 100)
    run_virtual(w.clock, join(w, None))
    assert maintenance(w, "n1")["maintenance"] is True


def test_the_refusal_is_a_409_with_the_reason_over_http():
    w = world(100, 0)
    run_virtual(w.clock, join(w, "n1"))
    n1 = w.nodes["n1"]
    app = create_app(n1, w.clock, live_window=3.0, commands=AdminCommands(n1), admin_token=TOKEN)

    async def post(body: dict[str, Any]) -> httpx.Response:
        # On the virtual-time loop: a hand-over's sleeps pass on the fake clock.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            return await c.post("/admin/maintenance", json=body, headers=auth)

    r = run_virtual(w.clock, post({"enabled": True}))
    assert r.status_code == 409
    assert r.json() == {
        "detail": "n1 is the master and no other node is eligible to take over; "
        "maintenance would leave the cluster without a master (use --force)"
    }
    assert not in_maintenance(w, "n1") and n1.holds_key
    r = run_virtual(w.clock, post({"enabled": True, "force": True}))
    assert r.status_code == 200, r.text
    assert r.json() == {"node": "n1", "maintenance": True, "handed_over_to": None}
    assert in_maintenance(w, "n1") and KEY not in w.data.keys


def test_since_when_maintenance_and_pause_are_on_comes_from_the_command_that_wrote_them():
    w = world(100, 100)
    run_virtual(w.clock, join(w, "n1"))
    n2 = w.nodes["n2"]
    n2.wall = lambda: 1.7e9
    maintenance(w, "n2")
    run_virtual(w.clock, AdminCommands(n2).pause(True))
    n2.wall = lambda: 1.8e9  # later reads keep the instants the keys carry
    run_virtual(w.clock, n2.read_control())
    assert (n2.snapshot.maintenance_since, n2.snapshot.paused_since) == (1.7e9, 1.7e9)
    run_virtual(w.clock, AdminCommands(n2).pause(False))
    run_virtual(w.clock, AdminCommands(n2).maintenance(False))
    assert (n2.snapshot.maintenance_since, n2.snapshot.paused_since) == (None, None)


def test_a_key_without_its_instant_is_dated_when_first_seen():
    w = world(100, 100)
    run_virtual(w.clock, join(w, "n1"))
    n2 = w.nodes["n2"]
    w.data.put("/vipmon/vipmon/control/pause", b'{"by": "n1"}', 0)  # an earlier release
    w.data.put(maintenance_key("vipmon", "n2"), b"{}", 0)
    n2.wall = lambda: 1.7e9
    run_virtual(w.clock, n2.read_control())
    n2.wall = lambda: 1.8e9
    run_virtual(w.clock, n2.read_control())
    assert (n2.snapshot.maintenance_since, n2.snapshot.paused_since) == (1.7e9, 1.7e9)
