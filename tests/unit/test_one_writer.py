"""One piece of state, one writer: the control state and who holds the key.

The control keys are read by three loops and the admin commands; a read that
was slow must never replace the state a newer read left. ``holds_key``,
``term``, ``leader`` and ``control`` are each assigned in exactly one method.
"""

import ast
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.clock import FakeClock
from app.election.control import decode_control, pause_key
from app.election.elector import Elector
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore
from tests.chaos.sim import Relay

APP = Path(__file__).resolve().parents[2] / "app"


class LateReply(Relay):
    """Holds the reply of the next ``get_prefix`` until :attr:`gate` is set."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.gate: asyncio.Event | None = None
        self.held = asyncio.Event()

    async def call(self, op: str, send: Callable[[], Awaitable[Any]]) -> Any:
        result = await send()
        gate = self.gate
        if op == "get_prefix" and gate is not None:
            self.gate = None
            self.held.set()
            await gate.wait()
        return result


def test_a_slow_read_of_the_control_keys_never_replaces_a_newer_one():
    """Finding 8: the loop whose read came back last won, however old its read."""
    clock = FakeClock()
    data = MemoryData(clock)

    async def scenario() -> None:
        store = LateReply(MemoryStore(data))
        e = Elector(load_settings({"node_id": "n1"}, env={}), store, clock)
        gate = store.gate = asyncio.Event()
        slow = asyncio.create_task(e.refresh_control())  # reads: not paused
        await store.held.wait()
        data.put(pause_key("vipmon"), b"{}", 0)
        assert await e.refresh_control()  # a newer read: paused
        assert e.control.paused
        gate.set()
        assert await slow
        assert e.control.paused, "the slow, older read replaced the newer state"

    asyncio.run(scenario())


def test_take_control_keeps_the_newest_revision():
    clock = FakeClock()
    e = Elector(load_settings({"node_id": "n1"}, env={}), MemoryStore(MemoryData(clock)), clock)
    e.take_control(decode_control("vipmon", [], revision=7))
    assert e.control.revision == 7
    e.take_control(decode_control("vipmon", [], revision=5))
    assert e.control.revision == 7
    e.take_control(decode_control("vipmon", [], revision=9))
    assert e.control.revision == 9


def _writers(attribute: str) -> set[str]:
    """Every function in app/ (outside __init__) that assigns ``<anything>.<attribute>``."""
    found = set()
    for path in APP.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if func.name == "__init__":
                continue
            for node in ast.walk(func):
                targets: list[ast.expr] = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                for target in targets:
                    for leaf in ast.walk(target):
                        if isinstance(leaf, ast.Attribute) and leaf.attr == attribute:
                            found.add(f"{path.relative_to(APP)}:{func.name}")
    return found


def test_who_holds_the_key_and_the_control_state_have_one_writer_each():
    assert _writers("holds_key") == {"election/elector.py:_set_hold"}
    assert _writers("term") == {"election/elector.py:_set_hold"}
    for attribute in ("leader", "leader_term", "leader_unknown"):
        assert _writers(attribute) == {"election/elector.py:_set_leader"}, attribute
    assert _writers("control") == {"election/cluster.py:take_control"}
