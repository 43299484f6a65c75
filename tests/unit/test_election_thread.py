"""The election thread: a loop that crashes stops the election and says so."""

from __future__ import annotations

import time
from typing import Any

from app.clock import MonotonicClock
from app.election.elector import Elector
from app.election.thread import ElectionThread
from app.role import Role, Transition
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore


class Buggy(MemoryStore):
    """A store whose keepalive hits a bug (not a StoreError) once armed."""

    armed = False

    async def keepalive(self, lease_id: int) -> float:
        if self.armed:
            raise RuntimeError("a bug in the store layer")
        return await super().keepalive(lease_id)


class Seen:
    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def transition(self, t: Transition, term: int) -> None:
        self.transitions.append(t)

    def renew_latency(self, seconds: float) -> None:
        pass

    def store_error(self, kind: str) -> None:
        pass


def wait_for(what: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        if what():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return bool(what())


def test_a_crashed_loop_turns_the_master_negative_and_reports_the_transition():
    """Finding 6: a crashed loop never ran on_standby, so a Layer-2 VIP stayed up."""
    clock = MonotonicClock()
    store = Buggy(MemoryData(clock))
    seen = Seen()
    settings = load_settings({"node_id": "n1", "advertise_url": "http://n1"}, env={})
    elector = Elector(settings, store, clock, observers=(seen,))
    thread = ElectionThread(elector)
    thread.start()
    try:
        assert wait_for(lambda: elector.role() is Role.MASTER, 10), "never became master"
        store.armed = True
        assert wait_for(lambda: not thread.is_alive(), 10), "the election did not stop"
    finally:
        thread.stop(5)
    assert thread.crashed is not None
    assert elector.role() is not Role.MASTER
    left = [t for t in seen.transitions if t.from_role is Role.MASTER]
    assert left, f"no transition out of MASTER was reported: {seen.transitions}"
