"""``maintenance on`` through the admin commands, on the in-memory store and a fake clock.

Issue 20, finding 9: maintenance of the last node that could be master is
refused (409) unless forced, and the refusal writes nothing. Finding 15: only a
node that held the key and handed it over reports ``handed_over_to``.
"""

from __future__ import annotations

from typing import Any

from app.election.admin import AdminCommands
from app.election.control import maintenance_key
from app.election.elector import Elector
from app.settings import load_settings
from app.store.memory import MemoryStore
from tests.chaos.sim import run_virtual
from tests.unit.test_handover import World

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


def test_a_standby_beside_the_last_eligible_master_may_go_into_maintenance():
    """Finding 15 too: a standby hands nothing over, so it names nobody."""
    w = world(100, 100)
    run_virtual(w.clock, join(w, "n1"))
    result = maintenance(w, "n2")
    assert result == {"node": "n2", "maintenance": True, "handed_over_to": None}
    assert in_maintenance(w, "n2") and w.masters() == ["n1"]
