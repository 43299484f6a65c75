"""A model of the election: three electors, one in-memory store, one fake clock.

Hypothesis explores interleavings of the elector's steps as the real node runs
them: the lease loop (``ensure_lease``/``renew``), the campaign loop
(``campaign``/``observe``/``verify_hold``), the members loop
(``refresh_members``/``refresh_control``) and the master's duties (``release``,
a planned hand-over) run as separate
tasks on one event loop, so one node can have a keepalive and an acquire in
flight at once. Any store call can be held in transit (before the store
applies it, or after, with the reply held back), released later or lost as a
timeout; the clock moves between and inside calls (``on_call`` latency); calls
fail (``fail_next``); leases expire (``MemoryData.sweep``); recorded watch
events arrive again, late and out of order; nodes resign, or crash and come
back as a fresh elector with the same node id; an operator writes and deletes
control keys (pause, switchover, maintenance). A node that is not stepped is a
paused process.

Invariants, checked after every rule and at intermediate instants (inside a
store call whose latency moves the clock, and just before each clock advance
ends):

* at no instant are two live nodes positive (``snapshot.is_master``);
* a positive node's term equals the ``create_revision`` of the leader key in the
  store at that instant, and the key's lease is still alive there;
* a node id's term, while positive, never goes backwards.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from app.clock import FakeClock
from app.election.control import Switchover, control_prefix
from app.election.elector import Elector
from app.election.records import decode_leader, leader_key
from app.errors import StoreUnavailable
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore
from tests.chaos.sim import Relay

NODES = ("n1", "n2", "n3")
KEY = leader_key("vipmon")
JUST_BEFORE = 1e-6


class Hold(enum.Enum):
    """Where the next store call of a step waits for the test, if anywhere."""

    NONE = "none"
    REQUEST = "request"  # not yet applied by the store
    REPLY = "reply"  # applied; the answer has not reached the node


class InTransit:
    """One held call: ``reached`` is set when the call gets to the hold point."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.reached: asyncio.Future[None] = loop.create_future()
        self.release: asyncio.Future[bool] = loop.create_future()  # True: lost (timeout)


class Wire(Relay):
    """The network between one node and the store: a task's next call may be held."""

    def __init__(self, inner: MemoryStore, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(inner)
        self.memory = inner
        self.loop = loop
        self.holds: dict[asyncio.Task[Any], Hold] = {}
        self.transits: dict[asyncio.Task[Any], InTransit] = {}

    async def _wait(self, task: asyncio.Task[Any]) -> None:
        transit = InTransit(self.loop)
        self.transits[task] = transit
        transit.reached.set_result(None)
        try:
            lost = await transit.release
        finally:
            del self.transits[task]
        if lost:
            raise StoreUnavailable("timed out in transit")

    async def call(self, op: str, send: Callable[[], Awaitable[Any]]) -> Any:
        task = asyncio.current_task()
        assert task is not None
        hold = self.holds.pop(task, Hold.NONE)
        if hold is Hold.REQUEST:
            await self._wait(task)
        result = await send()
        if hold is Hold.REPLY:
            await self._wait(task)
        return result


# The node's concurrent loops (tasks on one event loop) and the steps each one runs.
LOOP_OF = {
    "ensure_lease": "lease",
    "renew": "lease",
    "campaign": "campaign",
    "observe": "campaign",
    "verify_hold": "campaign",
    "refresh_members": "members",
    "refresh_control": "members",
    "release": "control",  # the master's planned hand-over (no drain time)
}
ARGS: dict[str, dict[str, Any]] = {"observe": {"timeout": 1.0}, "release": {"reason": "test"}}
HOLDS = st.sampled_from([Hold.REPLY, Hold.REQUEST, Hold.NONE])
AFTER = ("round", "nothing", "sweep")
CONTROL_KEYS = ("pause", "switchover", "maintenance/n1")


@dataclass
class NodeSim:
    """One running process: its elector, its wire, its in-flight steps."""

    elector: Elector
    wire: Wire
    stopped: bool = False
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)


class World:
    """Three nodes on a shared store and clock, driven on one event loop we own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.data = MemoryData(self.clock)
        self.nodes = {node_id: self.boot(node_id) for node_id in NODES}

    def boot(self, node_id: str) -> NodeSim:
        cfg = load_settings({"node_id": node_id, "advertise_url": f"http://{node_id}"}, env={})
        wire = Wire(MemoryStore(self.data), self.loop)
        return NodeSim(Elector(cfg, wire, self.clock), wire)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def step(self, node: NodeSim, name: str, hold: Hold = Hold.NONE) -> None:
        """Run one step as a task of its loop until it ends or is held in transit."""
        loop_name = LOOP_OF[name]
        task = self.loop.create_task(getattr(node.elector, name)(**ARGS.get(name, {})))
        node.wire.holds[task] = hold
        node.tasks[loop_name] = task
        self.run(self._until_held_or_done(node, task))
        node.wire.holds.pop(task, None)
        self.reap(node)

    async def _until_held_or_done(self, node: NodeSim, task: asyncio.Task[Any]) -> None:
        for _ in range(100):
            if task.done() or task in node.wire.transits:
                return
            await asyncio.sleep(0)
        raise AssertionError("a step neither ended nor reached its hold point")

    def release(self, node: NodeSim, loop_name: str, lost: bool) -> None:
        task = node.tasks.get(loop_name)
        transit = node.wire.transits.get(task) if task is not None else None
        if task is None or transit is None:
            return
        transit.release.set_result(lost)
        self.run(asyncio.wait({task}))
        self.reap(node)

    def reap(self, node: NodeSim) -> None:
        """Forget finished tasks; an exception other than a store error is a bug."""
        for name, task in list(node.tasks.items()):
            if task.done():
                del node.tasks[name]
                if not task.cancelled():
                    task.result()

    def cancel(self, node: NodeSim) -> None:
        tasks = list(node.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            self.run(asyncio.wait(tasks))
        self.reap(node)

    def running(self, loop_name: str | None) -> list[NodeSim]:
        """Nodes that have not exited, with nothing in flight on ``loop_name`` if given."""
        return [
            node
            for node in self.nodes.values()
            if not node.stopped and (loop_name is None or loop_name not in node.tasks)
        ]

    def close(self) -> None:
        for node in self.nodes.values():
            self.cancel(node)
        self.loop.close()


def running(loop_name: str | None) -> Callable[[ElectionModel], bool]:
    """Precondition: some node runs (and is free on ``loop_name``)."""
    return lambda machine: bool(machine.world.running(loop_name))


def next_step(node: NodeSim, loop_name: str) -> str:
    """What the node's loop does next, as :func:`app.election.runner.run_election` would."""
    elector = node.elector
    if loop_name == "lease":
        return "ensure_lease" if elector.lease_id is None else "renew"
    if loop_name == "campaign":
        return "observe" if elector.holds_key else "campaign"
    return "refresh_members"


class ElectionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.max_term: dict[str, int] = {}

    def teardown(self) -> None:
        self.world.close()

    # -- the invariants, at any instant -----------------------------------

    def check_at(self, t: float) -> None:
        masters = [
            (node_id, node.elector.snapshot)
            for node_id, node in self.world.nodes.items()
            if node.elector.snapshot.is_master(t)
        ]
        assert len(masters) <= 1, f"two masters at {t}: {masters}"
        for node_id, snap in masters:
            kv = self.world.data.keys.get(KEY)
            assert kv is not None, f"{node_id} positive with term {snap.term}; no key at {t}"
            assert kv.create_revision == snap.term, f"{node_id} term {snap.term}, key {kv}"
            lease = self.world.data.leases.get(kv.lease)
            assert lease is not None and lease.expires_at > t, f"{node_id}: key's lease gone"
            assert snap.term >= self.max_term.get(node_id, 0), f"{node_id} term went back"
            self.max_term[node_id] = snap.term

    @invariant()
    def one_master_now(self) -> None:
        self.check_at(self.world.clock.now())

    # -- steps ------------------------------------------------------------

    def pick(self, data: st.DataObject, loop_name: str | None = None) -> NodeSim:
        """A running node, free on ``loop_name`` if given (the precondition says one is)."""
        return data.draw(st.sampled_from(self.world.running(loop_name)))

    @initialize()
    def boot(self) -> None:
        """Every node holds a lease; nobody has campaigned yet."""
        for node in self.world.running(None):
            self.world.step(node, "ensure_lease")

    @rule()
    def round(self) -> None:
        """Every free loop of every node takes its next step, nothing held: progress."""
        for node in self.world.running(None):
            self.step_loops(node)

    def step_loops(self, node: NodeSim) -> None:
        """Each free loop of the node takes its next step; the lease loop re-grants at once."""
        if "lease" not in node.tasks:
            self.world.step(node, next_step(node, "lease"))
            if "lease" not in node.tasks and node.elector.lease_id is None:
                self.world.step(node, "ensure_lease")
        for loop_name in ("campaign", "members"):
            if loop_name not in node.tasks:
                self.world.step(node, next_step(node, loop_name))
        node.elector.tick()

    @precondition(lambda self: self.world.running(None))
    @rule(data=st.data(), name=st.sampled_from(sorted(set(LOOP_OF) - {"ensure_lease"})), hold=HOLDS)
    def step(self, data: st.DataObject, name: str, hold: Hold) -> None:
        """One step of one node, its first store call possibly held in transit.

        "renew" is the lease loop's next step: a grant when the node has no lease.
        """
        free = self.world.running(LOOP_OF[name])
        if free:
            node = data.draw(st.sampled_from(free))
            self.world.step(node, next_step(node, "lease") if name == "renew" else name, hold)

    @precondition(lambda self: self.world.running(None))
    @rule(
        data=st.data(),
        slow=st.sampled_from(["campaign", "lease", "members"]),
        dt=st.sampled_from([2.6, 0.5, 1.5]),
    )
    def overtake(self, data: st.DataObject, slow: str, dt: float) -> None:
        """A reply is overtaken: time passes, the node's other loops step, then it lands."""
        free = self.world.running(slow)
        if not free:
            return
        node = data.draw(st.sampled_from(free))
        self.world.step(node, next_step(node, slow), Hold.REPLY)
        self.advance(dt, "nothing")
        self.step_loops(node)
        self.world.release(node, slow, lost=False)

    @precondition(lambda self: any(n.wire.transits for n in self.world.nodes.values()))
    @rule(data=st.data(), lost=st.booleans())
    def deliver(self, data: st.DataObject, lost: bool) -> None:
        """A held call goes through, or is lost (the node sees a timeout)."""
        held = [
            (node, name)
            for node in self.world.nodes.values()
            for name, task in node.tasks.items()
            if task in node.wire.transits
        ]
        node, name = data.draw(st.sampled_from(held))
        self.world.release(node, name, lost)

    @rule(dt=st.sampled_from([2.6, 0.5, 1.5, 0.1, 2.0, 1.0]), then=st.sampled_from(AFTER))
    def advance(self, dt: float, then: str) -> None:
        """Time passes; then maybe the store sweeps expired leases, or the loops step."""
        now = self.world.clock.now()
        for t in (now + dt / 2, now + dt - JUST_BEFORE):
            self.check_at(t)
        self.world.clock.advance(dt)
        if then == "sweep":
            self.world.data.sweep()
        elif then == "round":
            self.round()

    @rule(node_id=st.sampled_from(NODES), dt=st.sampled_from([0.05, 0.3, 0.6, 1.6, 2.2]))
    def latency(self, node_id: str, dt: float) -> None:
        """The node's next store call reaches the store ``dt`` s after it was sent."""
        store = self.world.nodes[node_id].wire.memory

        def slow(call: str) -> None:
            store.on_call = None
            self.check_at(self.world.clock.now() + dt - JUST_BEFORE)
            self.world.clock.advance(dt)
            self.check_at(self.world.clock.now())

        store.on_call = slow

    @rule(node_id=st.sampled_from(NODES), count=st.integers(1, 3))
    def store_error(self, node_id: str, count: int) -> None:
        self.world.nodes[node_id].wire.memory.fail_next(count=count)

    @precondition(lambda self: self.world.data.history and running(None)(self))
    @rule(data=st.data(), index=st.integers(0, 200))
    def replay_event(self, data: st.DataObject, index: int) -> None:
        """A recorded watch event arrives again: late, twice, out of order."""
        history = self.world.data.history
        self.pick(data).elector.apply_event(history[-1 - index % len(history)])

    @precondition(running(None))
    @rule(data=st.data())
    def resign(self, data: st.DataObject) -> None:
        """SIGTERM: the loops are cancelled, then the node resigns and exits."""
        node = self.pick(data)
        self.world.cancel(node)
        self.world.run(node.elector.resign())
        node.stopped = True

    @rule(node_id=st.sampled_from(NODES))
    def restart(self, node_id: str) -> None:
        """SIGKILL (or exit) and start again: a fresh elector with the same node id."""
        self.world.cancel(self.world.nodes[node_id])
        self.world.nodes[node_id] = self.world.boot(node_id)

    @rule(
        name=st.sampled_from(["pause", "switchover", "maintenance/n1"]), to=st.sampled_from(NODES)
    )
    def operator(self, name: str, to: str) -> None:
        """An operator writes a control key, or deletes it if it is there."""
        data, key = self.world.data, control_prefix("vipmon") + name
        if key in data.keys:
            data.delete(key)
            return
        leader = data.keys.get(KEY)
        term = leader.create_revision if leader else 0
        holder = decode_leader(leader.value) if leader else None
        record = Switchover(holder.node_id if holder else "n1", to, term)
        data.put(key, record.encode() if name == "switchover" else b"{}", 0)


TestElectionModel = ElectionModel.TestCase
TestElectionModel.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=False,
)
