"""A model of the election: three electors, one in-memory store, one fake clock.

Hypothesis explores interleavings of the elector's steps as the real node runs
them: the lease loop (``ensure_lease``/``renew``), the campaign loop
(``campaign``/``observe``/``verify_hold``), the members loop
(``refresh_members``/``refresh_control``) and the control loop (the master's
duties: ``refresh_control`` then ``handover.duties()``, a bare
``handover.release``, an admin switchover) run as separate tasks on one event
loop, so one node can have a keepalive, an acquire and a hand-over in flight
at once. The nodes drain for a nonzero ``drain_time`` and settle for
``settle_time``, on the fake clock; n1 has the highest priority and every node
fails back to it, so failback happens too.

A task of the model is always in one of three resting states between rules:
**done**, **held in transit** by the :class:`Wire` (before the store applies
its call, or after, with the reply held back), or **asleep on the clock**
(drain, settle, a switchover's poll or retry: :class:`ModelClock` knows who
sleeps until when). A rule runs the event loop until every task of every node
rests again (:meth:`World.settle`), checking the invariants at every turn of
the loop. Time moves only in rules: ``advance`` moves the clock from one
sleeper's instant to the next (or, ``late``, in one jump, as a stalled host
wakes), running each woken task until it rests; ``latency`` moves it inside a
store call.

The faults: any store call can be held in transit, released later or lost as
a timeout; replies are overtaken; calls fail (``fail_next``); leases expire
(``MemoryData.sweep``); recorded watch events arrive again, late and out of
order; nodes resign on SIGTERM (loops cancelled, then drain, settle and delete
as a task that sleeps while the others go on), or crash and come back as a
fresh elector with the same node id; an operator writes and deletes control
keys (pause, switchover, maintenance); an admin asks any node for a switchover;
maintenance is toggled for any node; a node's local check starts or stops
failing. A node that is not stepped is a paused process.

Invariants, checked after every rule and at intermediate instants (inside a
store call whose latency moves the clock, half-way through and just before the
end of each clock move, and at every turn of the event loop while woken tasks
run):

* at no instant are two live nodes positive (``snapshot.is_master``);
* a positive node's term equals the ``create_revision`` of the leader key in the
  store at that instant, and the key's lease is still alive there;
* a node id's term, while positive, never goes backwards;
* a node is never positive while its hand-over is releasing, and a releasing
  node holds no term but the one it releases (no term is won mid-release).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from app.clock import FakeClock
from app.election.control import (
    Switchover,
    control_prefix,
    decode_control,
    maintenance_key,
    pick_target,
)
from app.election.elector import Elector
from app.election.records import cluster_prefix, decode_leader, leader_key
from app.errors import StoreError, StoreUnavailable, SwitchoverFailed
from app.role import Role, Transition
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore
from tests.chaos.sim import Relay

NODES = ("n1", "n2", "n3")
KEY = leader_key("vipmon")
JUST_BEFORE = 1e-6
WAKE_EPSILON = 1e-9  # as FakeClock: advance() wakes a sleeper due within this of now
SETTLE_TURNS = 2000  # turns of the event loop before a task counts as stuck
#: Every node drains and fails back to n1 (the highest priority) after 1 s.
COMMON = {"drain_time": "0.3", "switchover_timeout": "3", "failback": True, "failback_hold": "1"}
PRIORITY = {"n1": 200}
SETTINGS = {
    node_id: load_settings(
        {
            "node_id": node_id,
            "advertise_url": f"http://{node_id}",
            "priority": PRIORITY.get(node_id, 100),
            **COMMON,
        },
        env={},
    )
    for node_id in NODES
}


class ModelClock(FakeClock):
    """The fake clock, knowing which task sleeps on it until when.

    A sleeper wakes only when the clock is advanced to its instant, as with
    :class:`FakeClock`, even one due "now" (a sleep shorter than the rounding).
    """

    def __init__(self) -> None:
        super().__init__()
        #: Tasks asleep and not yet woken, with the instant each waits for.
        self.asleep: dict[asyncio.Task[Any], float] = {}

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        due = self.now() + WAKE_EPSILON  # FakeClock's own wake condition
        for task in [task for task, wake in self.asleep.items() if wake <= due]:
            del self.asleep[task]

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        if seconds <= 0 or task is None:
            await super().sleep(seconds)
            return
        self.asleep[task] = self.now() + seconds
        try:
            await super().sleep(seconds)
        finally:
            self.asleep.pop(task, None)


@dataclass
class LocalCheck:
    """The node's local health check (a :class:`~app.election.cluster.CheckView`)."""

    configured: bool = True
    ok: bool = True
    detail: str = "passing"


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
    """The network between one node and the store: a task's next call may be held.

    A hold waits for the task's next store call, however long the task sleeps
    before making it (a release drains and settles before its delete).
    """

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


async def duties(e: Elector) -> None:
    """One turn of the control loop (app.election.runner): read the keys, do the duties."""
    if await e.refresh_control():
        if e.holds_key and not e.handover.releasing:
            event(f"duties: {duty_of(e)}")
        await e.handover.duties()


def duty_of(e: Elector) -> str:
    """Which of the master's duties applies (as Handover._duties decides; statistics only)."""
    record, me = e.control.switchover, e.me.node_id
    if record is not None and (
        (record.from_id == me and record.term == e.term) or record.to_id == me
    ):
        return "switchover record"
    if e.in_maintenance:
        return "maintenance"
    if not e.check().ok:
        return "failing check"
    target = pick_target(e.members, exclude=me)
    if (
        e.settings.failback
        and not e.control.paused
        and target is not None
        and target.priority > e.settings.priority
        and e.clock.now() - e.term_started >= e.settings.failback_hold
    ):
        return "failback"
    return "none"


async def admin_switchover(e: Elector, record: Switchover) -> tuple[int, float]:
    """``POST /admin/switchover`` on this node, as app.election.admin runs it."""
    async with e.handover.lock:
        return await e.handover.switchover(record)


async def shutdown(node: NodeSim) -> None:
    """After SIGTERM, as run_election's ``finally``: release with the lease loop still
    renewing, then stop the lease loop and resign (revoke)."""
    e = node.elector
    try:
        await e.handover.release("shutting down")
    finally:
        node.lease_only = False
    lease = node.tasks.get("lease")
    if lease is not None:
        lease.cancel()
        await asyncio.gather(lease, return_exceptions=True)
    await e.resign()


Step = Callable[[Elector], Coroutine[Any, Any, Any]]

# The node's concurrent loops (tasks on one event loop) and the steps each one runs.
LOOP_OF = {
    "ensure_lease": "lease",
    "renew": "lease",
    "campaign": "campaign",
    "observe": "campaign",
    "verify_hold": "campaign",
    "refresh_members": "members",
    "refresh_control": "members",
    "release": "control",  # a bare planned release (drain, settle, delete)
    "duties": "control",  # the master's duties: records, maintenance, check, failback
}
STEPS: dict[str, Step] = {
    "ensure_lease": lambda e: e.ensure_lease(),
    "renew": lambda e: e.renew(),
    "campaign": lambda e: e.campaign(),
    "observe": lambda e: e.observe(timeout=1.0),
    "verify_hold": lambda e: e.verify_hold(),
    "refresh_members": lambda e: e.refresh_members(),
    "refresh_control": lambda e: e.refresh_control(),
    "release": lambda e: e.handover.release("test"),
    "duties": duties,
}
HOLDS = st.sampled_from([Hold.REPLY, Hold.REQUEST, Hold.NONE])
AFTER = ("round", "nothing", "sweep")
CONTROL_KEYS = ("pause", "switchover", "maintenance/n1")
#: What a switchover may end with besides a new term: it is the admin's answer.
SWITCHOVER_OUTCOMES = (StoreError, SwitchoverFailed)
SWITCHOVER_KEY = control_prefix("vipmon") + "switchover"
#: Keys (under /vipmon/vipmon/) that the garbage rule writes, and what it writes there.
GARBAGE_KEYS = (
    "members/zz",
    "members/n2",
    "control/maintenance/zz",
    "history/00000000000000000001/begin",
    "history/00000000000000000001/end",
    "roster/zz",
)
GARBAGE_VALUES = (
    b"[" * 2000,
    b"\xff\xfe",
    b'{"id": "n2", "url": "http://n2", "started_at": 1e20}',
    b'{"term": 1, "id": "n1", "url": "", "began": NaN}',
)


@dataclass
class NodeSim:
    """One running process: its elector, its wire, its in-flight steps."""

    elector: Elector
    wire: Wire
    stopped: bool = False
    #: Stopped, but its lease loop renews on while the shutdown release drains.
    lease_only: bool = False
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    members_turn: int = 0


class Releases:
    """An observer that reports, as Hypothesis events, which hand-overs ran."""

    KINDS = ("failback", "maintenance", "check", "switchover", "shutting down", "test")

    def transition(self, t: Transition, term: int) -> None:
        if t.to_role is Role.DRAINING:
            kind = next((k for k in self.KINDS if k in t.reason), t.reason)
            event(f"drain reason: {kind}")

    def renew_latency(self, seconds: float) -> None:
        pass

    def store_error(self, kind: str) -> None:
        pass


class World:
    """Three nodes on a shared store and clock, driven on one event loop we own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = ModelClock()
        self.data = MemoryData(self.clock)
        self.checks = {node_id: LocalCheck() for node_id in NODES}
        #: Exceptions a task may end with that are outcomes, not bugs.
        self.expect: dict[asyncio.Task[Any], tuple[type[BaseException], ...]] = {}
        #: Called at every turn of the event loop: the invariants.
        self.observe: Callable[[], None] | None = None
        self.nodes = {node_id: self.boot(node_id) for node_id in NODES}

    def boot(self, node_id: str) -> NodeSim:
        cfg = SETTINGS[node_id]
        wire = Wire(MemoryStore(self.data), self.loop)
        check = self.checks[node_id]  # the host's check outlives the process
        elector = Elector(cfg, wire, self.clock, check=lambda: check, observers=(Releases(),))
        return NodeSim(elector, wire)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def step(self, node: NodeSim, name: str, hold: Hold = Hold.NONE) -> None:
        """Start one step as a task of its loop; run until every task rests."""
        self.start(node, LOOP_OF[name], STEPS[name](node.elector), hold)

    def start(
        self,
        node: NodeSim,
        loop_name: str,
        coro: Coroutine[Any, Any, Any],
        hold: Hold = Hold.NONE,
        expect: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Run ``coro`` as the task of ``loop_name``, its next store call held as told."""
        task = self.loop.create_task(coro)
        node.wire.holds[task] = hold
        node.tasks[loop_name] = task
        if expect:
            self.expect[task] = expect
        self.settle()

    def rests(self, node: NodeSim, task: asyncio.Task[Any]) -> bool:
        """Done, held in transit, or asleep until an instant to come."""
        if task.done():
            return True
        transit = node.wire.transits.get(task)
        if transit is not None:
            return not transit.release.done()
        return task in self.clock.asleep

    def settle(self) -> None:
        """Run the loop until every task of every node rests, then reap the finished."""
        self.run(self._settle())
        for node in list(self.nodes.values()):
            self.reap(node)

    async def _settle(self) -> None:
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)
            if self.observe is not None:
                self.observe()
            if all(
                self.rests(node, task)
                for node in self.nodes.values()
                for task in node.tasks.values()
            ):
                return
        stuck = [
            f"{name} of {node.elector.settings.node_id}: {_where(task)}"
            for node in self.nodes.values()
            for name, task in node.tasks.items()
            if not self.rests(node, task)
        ]
        raise AssertionError(
            f"tasks neither ended, nor reached a hold point, nor fell asleep: {stuck}"
        )

    def release(self, node: NodeSim, loop_name: str, lost: bool) -> None:
        task = node.tasks.get(loop_name)
        transit = node.wire.transits.get(task) if task is not None else None
        if task is None or transit is None:
            return
        transit.release.set_result(lost)
        self.settle()

    def reap(self, node: NodeSim) -> None:
        """Forget finished tasks; an exception that is not an expected outcome is a bug."""
        for name, task in list(node.tasks.items()):
            if not task.done():
                continue
            del node.tasks[name]
            node.wire.holds.pop(task, None)
            expected = self.expect.pop(task, ())
            if task.cancelled():
                continue
            exc = task.exception()
            if expected:
                event(f"switchover: {type(exc).__name__ if exc else 'the target took the role'}")
            if exc is not None and not isinstance(exc, expected):
                raise exc

    def cancel(self, node: NodeSim) -> None:
        """Cancel every task of the node; again if one sleeps in a ``finally``."""
        for _ in range(10):
            pending = [task for task in node.tasks.values() if not task.done()]
            if not pending:
                self.reap(node)
                return
            for task in pending:
                task.cancel()
            self.settle()
        raise AssertionError(f"tasks of {node.elector.settings.node_id} survive cancellation")

    def running(self, loop_name: str | None) -> list[NodeSim]:
        """Nodes that have not exited, with nothing in flight on ``loop_name`` if given."""
        return [
            node
            for node in self.nodes.values()
            if (not node.stopped or (node.lease_only and loop_name == "lease"))
            and (loop_name is None or loop_name not in node.tasks)
        ]

    def close(self) -> None:
        self.observe = None
        try:
            for node in self.nodes.values():
                self.cancel(node)
        finally:
            self.loop.close()


def _where(task: asyncio.Task[Any]) -> list[str]:
    """Where a task waits: its chain of awaits, innermost last."""
    where: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_frame"):
        frame = coro.cr_frame
        if frame is not None:
            where.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None)
    where.append(repr(coro))
    return where


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
    if loop_name == "control":
        return "duties"
    node.members_turn += 1  # the members loop reads the control keys, then the members
    return "refresh_control" if node.members_turn % 2 else "refresh_members"


class ElectionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.max_term: dict[str, int] = {}
        self.world.observe = lambda: self.check_at(self.world.clock.now())

    def teardown(self) -> None:
        self.world.close()

    # -- the invariants, at any instant -----------------------------------

    def check_at(self, t: float) -> None:
        for node_id, node in self.world.nodes.items():
            handover = node.elector.handover
            if handover.releasing:
                assert not node.elector.snapshot.is_master(t), (
                    f"{node_id} positive at {t} while releasing term {handover.releasing_term}"
                )
                assert not node.elector.holds_key or node.elector.term == handover.releasing_term, (
                    f"{node_id} holds term {node.elector.term} while releasing "
                    f"term {handover.releasing_term}"
                )
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
        for node in self.world.nodes.values():
            self.step_loops(node)

    def step_loops(self, node: NodeSim) -> None:
        """Each free loop of the node takes its next step; the lease loop re-grants at once."""
        if node.stopped and not node.lease_only:
            return
        if "lease" not in node.tasks:
            self.world.step(node, next_step(node, "lease"))
            if "lease" not in node.tasks and node.elector.lease_id is None:
                self.world.step(node, "ensure_lease")
        for loop_name in ("campaign", "members", "control"):
            if loop_name not in node.tasks and not node.stopped:
                self.world.step(node, next_step(node, loop_name))
        node.elector.tick()

    @precondition(lambda self: self.world.running(None))
    @rule(
        data=st.data(),
        name=st.sampled_from(sorted(set(LOOP_OF) - {"ensure_lease", "release"})),
        hold=HOLDS,
    )
    def step(self, data: st.DataObject, name: str, hold: Hold) -> None:
        """One step of one node, its next store call possibly held in transit.

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
        self.advance(dt, "nothing", late=False)
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

    @rule(
        dt=st.sampled_from([2.6, 0.5, 1.5, 0.1, 2.0, 1.0, 0.35]),
        then=st.sampled_from(AFTER),
        late=st.booleans(),
    )
    def advance(self, dt: float, then: str, late: bool) -> None:
        """Time passes; then maybe the store sweeps expired leases, or the loops step.

        The clock stops at each sleeper's instant on the way and runs what woke
        until it rests again; ``late``: it jumps, and sleepers wake at the end.
        """
        clock = self.world.clock
        end = clock.now() + dt
        for _ in range(10_000):
            now, wake = clock.now(), clock.next_wake()
            # Stop at the next sleeper's instant, moving on by at least a microsecond.
            stop = end if late or wake is None else min(end, max(wake, now + JUST_BEFORE))
            for t in ((now + stop) / 2, stop - JUST_BEFORE):
                if t > now:
                    self.check_at(t)
            clock.advance(max(0.0, stop - now))
            self.world.settle()
            if stop == end:
                break
        else:
            raise AssertionError("the clock made no progress: a sleeper wakes without end")
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
            self.world.clock.advance(dt)  # sleepers due by then wake, late
            self.check_at(self.world.clock.now())

        store.on_call = slow

    @rule(node_id=st.sampled_from(NODES), count=st.integers(1, 3))
    def store_error(self, node_id: str, count: int) -> None:
        self.world.nodes[node_id].wire.memory.fail_next(count=count)

    @precondition(lambda self: self.world.data.history and running(None)(self))
    @rule(data=st.data(), index=st.integers(0, 200))
    def replay_event(self, data: st.DataObject, index: int) -> None:
        """A recorded watch event arrives again: late, twice, out of order."""
        history = [e for e in self.world.data.history if e.kv.key == KEY]  # what a watch sees
        if history:
            self.pick(data).elector.apply_event(history[-1 - index % len(history)])

    # -- the hand-overs ---------------------------------------------------

    @precondition(lambda self: KEY in self.world.data.keys and running("control")(self))
    @rule(data=st.data(), to=st.sampled_from(NODES), hold=HOLDS)
    def switchover(self, data: st.DataObject, to: str, hold: Hold) -> None:
        """An admin asks any node to switch over from the holder of the key to ``to``."""
        leader = self.world.data.keys[KEY]
        holder = decode_leader(leader.value)
        if holder is None or holder.node_id == to:
            return
        node = self.pick(data, "control")
        record = Switchover(holder.node_id, to, leader.create_revision)
        coro = admin_switchover(node.elector, record)
        self.world.start(node, "control", coro, hold, expect=SWITCHOVER_OUTCOMES)

    @precondition(lambda self: self.masters_free())
    @rule(data=st.data(), hold=HOLDS)
    def release(self, data: st.DataObject, hold: Hold) -> None:
        """A node that holds the key releases it with nobody to hand over to: drain,
        settle, delete (what ``hand_over`` does without a target, or when paused)."""
        node = data.draw(st.sampled_from(self.masters_free()))
        self.world.step(node, "release", hold)

    def masters_free(self) -> list[NodeSim]:
        return [node for node in self.world.running("control") if node.elector.holds_key]

    @rule(node_id=st.sampled_from(NODES))
    def maintenance(self, node_id: str) -> None:
        """Maintenance of a node goes on (or off), then that node's duties run."""
        data, key = self.world.data, maintenance_key("vipmon", node_id)
        if key in data.keys:
            data.delete(key)
        else:
            data.put(key, b"{}", 0)
        self.duties_of(node_id)

    @rule(node_id=st.sampled_from(NODES))
    def check(self, node_id: str) -> None:
        """The node's local check starts (or stops) failing, then its duties run."""
        check = self.world.checks[node_id]
        check.ok = not check.ok
        check.detail = "passing" if check.ok else "injected failure"
        self.duties_of(node_id)

    def duties_of(self, node_id: str) -> None:
        node = self.world.nodes[node_id]
        if not node.stopped and "control" not in node.tasks:
            self.world.step(node, "duties")

    @precondition(running(None))
    @rule(data=st.data(), hold=HOLDS)
    def resign(self, data: st.DataObject, hold: Hold) -> None:
        """SIGTERM: stop, every loop but the lease loop is cancelled, then the node
        releases (drain, settle, delete) as a task that sleeps on the clock while
        its lease loop and the other nodes go on; then it resigns (revoke)."""
        self.stop(self.pick(data), hold)

    def stop(self, node: NodeSim, hold: Hold) -> None:
        node.stopped = node.lease_only = True
        node.elector.request_stop()
        lease = node.tasks.pop("lease", None)
        self.world.cancel(node)
        if lease is not None:
            node.tasks["lease"] = lease
        self.world.start(node, "resign", shutdown(node), hold)

    @rule(node_id=st.sampled_from(NODES))
    def restart(self, node_id: str) -> None:
        """SIGKILL (or exit) and start again: a fresh elector with the same node id."""
        self.world.cancel(self.world.nodes[node_id])
        self.world.nodes[node_id] = self.world.boot(node_id)

    @rule(name=st.sampled_from(CONTROL_KEYS), to=st.sampled_from(NODES))
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

    @rule()
    def compaction(self) -> None:
        """The store's old revisions are compacted (or no longer): from now on a delete's
        event carries no old value (``create_revision`` 0), as etcd sends it then."""
        self.world.data.prev_kv = not self.world.data.prev_kv
        event(f"deletes with prev_kv: {self.world.data.prev_kv}")

    @precondition(lambda self: SWITCHOVER_KEY in self.world.data.keys and running(None)(self))
    @rule(data=st.data(), crash=st.booleans(), hold=HOLDS)
    def target_stops(self, data: st.DataObject, crash: bool, hold: Hold) -> None:
        """The node a switchover record names stops (SIGTERM) or crashes, mid-switchover."""
        record = decode_control("vipmon", [self.world.data.keys[SWITCHOVER_KEY]]).switchover
        node = self.world.nodes.get(record.to_id) if record is not None else None
        if node is None or node.stopped:
            return
        event(f"switchover target {'crashes' if crash else 'stops'}")
        if crash:
            self.restart(node.elector.settings.node_id)
        else:
            self.stop(node, hold)

    @rule(kind=st.sampled_from(GARBAGE_KEYS), value=st.sampled_from(GARBAGE_VALUES))
    def garbage(self, kind: str, value: bytes) -> None:
        """Anyone with write access puts garbage under a key of the cluster (never the
        leader key: that is held by someone unknown, by design)."""
        self.world.data.put(cluster_prefix("vipmon") + kind, value, 0)


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
