"""Regression tests for the planned hand-over, on the in-memory store and a fake clock.

Each test reproduces one way the hand-over used to lose the invariant or
leave the cluster without a master, and asserts the safe outcome.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from app.clock import FakeClock
from app.election.control import ControlState, Switchover, switchover_key
from app.election.elector import Elector
from app.election.records import leader_key
from app.errors import StoreError, StoreUnavailable, SwitchoverFailed
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore
from tests.chaos.sim import run_virtual

KEY = leader_key("vipmon")


class World:
    def __init__(self, n: int = 2, **extra: Any) -> None:
        self.clock = FakeClock()
        self.data = MemoryData(self.clock)
        self.extra = extra
        self.nodes = {f"n{i}": self.node(f"n{i}") for i in range(1, n + 1)}

    def node(self, node_id: str) -> Elector:
        cfg = {"node_id": node_id, "advertise_url": f"http://{node_id}", **self.extra}
        return Elector(load_settings(cfg, env={}), MemoryStore(self.data), self.clock)

    async def elect(self, first: str = "n1") -> Elector:
        for e in self.nodes.values():
            await e.ensure_lease()
            await e.refresh_members()
        await self.nodes[first].campaign()
        for e in self.nodes.values():
            await e.campaign()
        return self.nodes[first]

    def masters(self, at: float | None = None) -> list[str]:
        now = self.clock.now() if at is None else at
        return [n for n, e in self.nodes.items() if e.snapshot.is_master(now)]

    def assert_at_most_one_master(self) -> None:
        masters = self.masters()
        assert len(masters) <= 1, f"two masters at {self.clock.now()}: {masters}"
        for node_id in masters:
            kv = self.data.keys.get(KEY)
            term = self.nodes[node_id].snapshot.term
            assert kv is not None and kv.create_revision == term, (
                f"{node_id} positive with term {term}, but the key is {kv}"
            )


async def _settle(task: asyncio.Task[Any], clock: FakeClock, seconds: float) -> None:
    """Let ``task`` sleep through ``seconds``, on the fake clock and on the real one."""
    for _ in range(int(seconds / 0.05) + 4):
        if task.done():
            return
        clock.advance(0.05)
        await asyncio.sleep(0.06)


def test_a_release_never_deletes_a_term_won_during_its_drain():
    """Finding 1: the drain's sleep outlived the term; the node won a new one, then deleted it."""
    w = World(drain_time="0.2")

    async def scenario() -> None:
        a = await w.elect("n1")
        b = w.nodes["n2"]
        release = asyncio.create_task(a.handover.release("switchover to n2"))
        await asyncio.sleep(0)
        assert not w.masters(), "the releasing master still answers positive"
        # A's link fails for longer than TTL - margin: lease, key and all expire.
        w.clock.advance(2.1)
        w.data.sweep()
        await a.renew()  # gives the expired lease up
        await a.ensure_lease()
        await a.campaign()  # a releasing node must not take a new term
        assert not a.snapshot.is_master(w.clock.now()), (
            f"n1 answers positive with term {a.snapshot.term} in the middle of its release"
        )
        w.assert_at_most_one_master()
        await _settle(release, w.clock, 0.5)
        assert release.done()
        for e in (a, b):
            await e.observe(0.0)
            await e.campaign()
            w.assert_at_most_one_master()
        assert len(w.masters()) == 1, "nobody leads after the release"

    asyncio.run(scenario())


def test_the_key_goes_only_a_settle_time_after_the_master_turned_negative():
    """Finding 2: the delete followed the negative publish at once, with no margin."""
    w = World(settle_time="0.05")
    seen: list[tuple[str, float]] = []

    async def scenario() -> None:
        a = await w.elect("n1")
        w.nodes["n1"].store.on_call = lambda op: seen.append((op, w.clock.now()))  # type: ignore[attr-defined]
        release = asyncio.create_task(a.handover.release("planned"))
        await asyncio.sleep(0)
        negative_at = w.clock.now()
        assert not a.snapshot.is_master(negative_at)
        await _settle(release, w.clock, 0.3)
        assert release.result() is True
        deletes = [t for op, t in seen if op == "resign"]
        assert deletes, "the key was never deleted"
        assert deletes[0] - negative_at >= a.settings.settle_time - 1e-9

    asyncio.run(scenario())


def test_a_failed_poll_still_withdraws_the_switchover_record():
    """Finding 3: one failed read in the switchover's poll left the record for ever."""
    w = World(3, switchover_timeout="3")

    async def scenario() -> None:
        a = await w.elect("n1")
        requester = a
        store = requester.store
        assert isinstance(store, MemoryStore)
        failures = {"left": 2}

        def flaky(op: str) -> None:
            if op == "get" and failures["left"]:
                failures["left"] -= 1
                store.fail_next(StoreUnavailable("injected: read failed"))

        store.on_call = flaky
        outcome: Exception | None = None
        try:  # n3 never campaigns here: the switchover times out
            await requester.handover.switchover(Switchover("n1", "n3", a.term))
        except (SwitchoverFailed, StoreError) as exc:
            outcome = exc
        assert switchover_key("vipmon") not in w.data.keys, (
            f"the switchover record outlived the switchover ({outcome!r})"
        )

    run_virtual(w.clock, scenario())


def test_a_stale_switchover_exemption_cannot_bypass_a_newer_record():
    """Finding 6: the target's exemption came from a control read up to 1 s old."""
    w = World(3)

    async def scenario() -> None:
        await w.elect("n1")
        n2 = w.nodes["n2"]
        key = switchover_key("vipmon")
        w.data.put(key, Switchover("n1", "n2", 1).encode(), 0)
        await n2.refresh_control()  # n2 now believes it is the target
        w.data.delete(key)
        w.data.put(key, Switchover("n1", "n3", 1).encode(), 0)  # a newer record names n3
        w.data.delete(KEY)  # the old master released
        await n2.observe(0.0)
        await n2.campaign()
        assert n2.holds_key is False, "n2 took the role against a switchover naming n3"

    asyncio.run(scenario())


def test_a_stop_requested_during_a_publish_is_never_undone():
    """Finding 6: request_stop wrote the snapshot from another thread and could be undone."""
    w = World(1)

    class StopOnTransition:
        def __init__(self, e: Elector) -> None:
            self.e = e

        def transition(self, t: Any, term: int) -> None:
            self.e.request_stop()  # what the HTTP thread does on SIGTERM, at the worst moment

        def renew_latency(self, seconds: float) -> None:
            pass

        def store_error(self, kind: str) -> None:
            pass

    async def scenario() -> None:
        e = w.nodes["n1"]
        await e.ensure_lease()
        e.observers = (StopOnTransition(e),)
        await e.campaign()
        assert not e.snapshot.is_master(w.clock.now()), "positive after request_stop"

    asyncio.run(scenario())


def test_a_paused_cluster_keeps_its_master_when_its_check_fails():
    """Found by the model test: the duties released although the pause blocks every acquire."""

    class Failing:
        configured, ok, detail = True, False, "http: 500"

    w = World(2)

    async def scenario() -> None:
        a = await w.elect("n1")
        await w.nodes["n2"].refresh_members()
        await a.refresh_members()
        a.check = Failing  # type: ignore[assignment]
        w.data.put("/vipmon/vipmon/control/pause", b"{}", 0)
        await a.refresh_control()
        await a.handover.duties()
        assert a.holds_key, "the paused cluster lost its master"

    run_virtual(w.clock, scenario())


def test_a_switchover_target_campaigns_without_the_priority_delay():
    """The record keeps every other node out: a lower-priority target need not wait."""
    w = World(3)
    target = w.nodes["n2"]
    high = replace(target.member_record(), node_id="n3", priority=500)
    target.members = (target.member_record(), high)
    assert target.free_key_delay() == target.settings.priority_delay  # one higher member
    record = Switchover("n1", "n2", 7)
    target.control = ControlState(switchover=record)
    assert target.free_key_delay() == 0.0
    target.control = ControlState(switchover=Switchover("n1", "n3", 7))
    assert target.free_key_delay() == target.settings.priority_delay


def test_a_cancelled_release_never_leaves_the_node_positive():
    """Finding 7: leaving the releasing state in ``finally`` published MASTER again."""
    w = World(drain_time="0.5")

    async def scenario() -> None:
        a = await w.elect("n1")
        release = asyncio.create_task(a.handover.release("switchover to n2"))
        await asyncio.sleep(0)
        assert a.handover.releasing and not w.masters()
        release.cancel()
        await asyncio.gather(release, return_exceptions=True)
        assert not a.handover.releasing
        assert not a.snapshot.is_master(w.clock.now()), "positive after a cancelled release"
        assert a.lease_id is None  # abandoned: the key goes with the lease, with its margin

    asyncio.run(scenario())


class HeldBarrier:
    """A serving loop that has not yet written an answer computed before the release."""

    def __init__(self) -> None:
        self.asked = 0
        self.pass_ = asyncio.Event()
        self.answer = True

    async def passed(self, timeout: float) -> bool:
        self.asked += 1
        await self.pass_.wait()
        return self.answer


def test_a_release_deletes_the_key_only_after_the_probe_loop_passed_the_barrier():
    """Finding 6: the settle time alone covered an answer held up on its way out."""
    w = World()

    async def scenario() -> None:
        a = await w.elect("n1")
        barrier = HeldBarrier()
        a.barrier = barrier
        release = asyncio.create_task(a.handover.release("switchover to n2"))
        await _settle(release, w.clock, 0.2)  # far past the 10 ms settle time
        assert barrier.asked == 1
        assert KEY in w.data.keys, "the key went before the probe loop confirmed"
        barrier.pass_.set()
        assert await release
        assert KEY not in w.data.keys

    asyncio.run(scenario())


def test_a_barrier_that_does_not_pass_abandons_the_lease_instead_of_deleting():
    w = World()

    async def scenario() -> None:
        a = await w.elect("n1")
        barrier = HeldBarrier()
        barrier.answer = False
        barrier.pass_.set()
        a.barrier = barrier
        release = asyncio.create_task(a.handover.release("switchover to n2"))
        await _settle(release, w.clock, 0.2)
        assert not await release
        assert KEY in w.data.keys  # left to expire with the lease
        assert a.lease_id is None and not a.holds_key
        assert not a.snapshot.is_master(w.clock.now())

    asyncio.run(scenario())


async def _switchover_to_n2(w: World) -> tuple[Elector, Elector, asyncio.Task[Any], float]:
    a = await w.elect("n1")
    b = w.nodes["n2"]
    started = w.clock.now()
    task = asyncio.create_task(a.handover.switchover(Switchover("n1", "n2", a.term)))
    for _ in range(50):  # until the master released, its record in the same transaction
        await asyncio.sleep(0)
        if switchover_key("vipmon") in w.data.keys:
            break
        w.clock.advance(0.005)  # through the settle time
    assert switchover_key("vipmon") in w.data.keys
    assert KEY not in w.data.keys  # the term went with the record's put
    return a, b, task, started


async def _failure_of(task: asyncio.Task[Any], w: World) -> str:
    await _settle(task, w.clock, 4.0)
    assert task.done(), "the switchover still waits"
    exc = task.exception()
    assert isinstance(exc, SwitchoverFailed)
    return str(exc)


def test_a_switchover_whose_target_crashed_is_withdrawn_when_its_member_record_goes():
    """Finding 4: a dead target kept the record, and the cluster masterless, for the timeout."""
    w = World(3, switchover_timeout="3")

    async def scenario() -> None:
        _, b, task, started = await _switchover_to_n2(w)
        assert b.lease_id is not None
        w.data.drop_lease(b.lease_id)  # n2 crashed: its lease ran out, its member record went
        message = await _failure_of(task, w)
        assert "n2 is gone" in message
        assert w.clock.now() - started < 3.0, "withdrawn only at the switchover timeout"
        assert switchover_key("vipmon") not in w.data.keys
        n3 = w.nodes["n3"]
        await n3.refresh_control()
        await n3.verify_hold()
        await n3.campaign()
        assert w.masters() == ["n3"]  # nothing blocks the others any more

    asyncio.run(scenario())


def test_a_target_that_stops_deletes_the_record_naming_it():
    w = World(3, switchover_timeout="3")

    async def scenario() -> None:
        _, b, task, started = await _switchover_to_n2(w)
        await b.resign()  # SIGTERM on the target, before it took the role
        assert switchover_key("vipmon") not in w.data.keys, "the stopping target left it"
        await _failure_of(task, w)
        assert w.clock.now() - started < 3.0

    asyncio.run(scenario())


def test_a_target_that_turns_ineligible_ends_the_wait():
    w = World(3, switchover_timeout="3")

    async def scenario() -> None:
        _, b, task, _ = await _switchover_to_n2(w)
        b.control = replace(b.control, maintenance=frozenset({"n2"}))
        await b.publish_member()  # its record now says it cannot lead
        assert "no longer eligible" in await _failure_of(task, w)
        assert switchover_key("vipmon") not in w.data.keys

    asyncio.run(scenario())


def test_the_masters_switchover_writes_its_record_with_the_delete_and_the_target_acquires_on_it():
    """Issue 24: the record goes in with the term's delete, in one transaction, and the
    target takes the role on that watch event, without reading the control keys."""
    w = World(3, switchover_timeout="3")

    async def scenario() -> None:
        a, b, task, _ = await _switchover_to_n2(w)  # the record is there, and the key gone
        store = b.store
        assert isinstance(store, MemoryStore)
        assert b.control.switchover is None  # b has not read the control keys since
        store.calls.clear()
        await b.observe(0.0)
        assert b.control.switchover is not None and b.control.switchover.to_id == "n2"
        assert b.sees_key_free and b.free_key_delay() == 0
        await b.campaign()
        assert store.calls == ["watch", "acquire"], store.calls  # no read on the way
        assert w.masters() == ["n2"]
        term, _ = await asyncio.wait_for(task, 5)
        assert term == b.term and not a.holds_key
        assert switchover_key("vipmon") not in w.data.keys  # withdrawn by the old master

    run_virtual(w.clock, scenario())


def test_a_masters_switchover_refused_when_another_record_is_known_releases_nothing():
    w = World(3)

    async def scenario() -> None:
        a = await w.elect("n1")
        a.control = replace(a.control, switchover=Switchover("n1", "n3", a.term, 99))
        with pytest.raises(SwitchoverFailed, match="another switchover"):
            await a.handover.switchover(Switchover("n1", "n2", a.term))
        assert w.masters() == ["n1"] and KEY in w.data.keys

    run_virtual(w.clock, scenario())


def test_a_record_that_got_in_during_the_release_makes_the_master_delete_alone():
    """Another requester's record appeared between the master's check and its transaction:
    the transaction's absent guard fails, the master deletes its term alone, and that
    record decides who is next."""
    w = World(3)

    async def scenario() -> None:
        a = await w.elect("n1")
        theirs = w.data.put(switchover_key("vipmon"), Switchover("n1", "n3", a.term).encode(), 0)
        with pytest.raises(SwitchoverFailed, match="another switchover"):
            await a.handover.switchover(Switchover("n1", "n2", a.term))
        assert KEY not in w.data.keys and not a.holds_key
        assert w.data.keys[switchover_key("vipmon")] == theirs  # theirs, untouched

    run_virtual(w.clock, scenario())


def test_a_record_lease_that_was_not_granted_still_releases_and_says_so():
    w = World(3)

    async def scenario() -> None:
        a = await w.elect("n1")
        store = a.store
        assert isinstance(store, MemoryStore)
        store.on_call = lambda op: (
            store.fail_next(StoreUnavailable("injected: no grant")) if op == "grant" else None
        )
        with pytest.raises(StoreError, match="no grant"):
            await a.handover.switchover(Switchover("n1", "n2", a.term))
        assert KEY not in w.data.keys and not a.holds_key  # released, as a plain release
        assert switchover_key("vipmon") not in w.data.keys

    run_virtual(w.clock, scenario())
