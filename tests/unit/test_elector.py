"""The elector's steps against the in-memory store on a fake clock."""

import asyncio
import logging

from app.clock import FakeClock
from app.election.elector import Elector
from app.election.records import leader_key
from app.election.runner import _stale_holder
from app.errors import StoreAuthError, StoreUnavailable
from app.role import Role
from app.settings import load_settings
from app.store.base import EventKind, KeyValue, Renewal, WatchEvent
from app.store.memory import MemoryData, MemoryStore
from tests.chaos.sim import run_virtual


def run(coro):
    return asyncio.run(coro)


class World:
    def __init__(self, n: int = 3) -> None:
        self.clock = FakeClock()
        self.data = MemoryData(self.clock)
        self.nodes = [self.node(f"n{i}") for i in range(1, n + 1)]

    def node(self, node_id: str) -> Elector:
        settings = load_settings({"node_id": node_id}, env={})
        return Elector(settings, MemoryStore(self.data), self.clock)

    def step_all(self) -> None:
        for e in self.nodes:
            run(e.ensure_lease())
            run(e.renew())
            run(e.campaign())

    def masters(self) -> list[str]:
        now = self.clock.now()
        return [e.settings.node_id for e in self.nodes if e.snapshot.is_master(now)]


def test_exactly_one_master_and_term_is_create_revision():
    w = World()
    w.step_all()
    assert len(w.masters()) == 1
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    kv = w.data.keys[leader_key("vipmon")]
    assert master.snapshot.term == kv.create_revision
    for e in w.nodes:
        if e is not master:
            assert e.role() is Role.STANDBY
            assert e.snapshot.leader_id == master.settings.node_id
            assert e.snapshot.term == master.snapshot.term


def test_crashed_master_goes_negative_before_anyone_else_turns_positive():
    w = World(2)
    w.step_all()
    old, other = (w.nodes[0], w.nodes[1]) if w.masters() == ["n1"] else (w.nodes[1], w.nodes[0])
    old_term = old.snapshot.term
    # The master stops renewing; the standby keeps renewing and campaigning.
    for _ in range(60):
        w.clock.advance(0.05)
        run(other.renew())
        run(other.campaign())
        assert len(w.masters()) <= 1
        if other.snapshot.is_master(w.clock.now()):
            assert not old.snapshot.is_master(w.clock.now())
            break
    assert other.role() is Role.MASTER
    assert other.snapshot.term > old_term
    assert old.role() is not Role.MASTER


def test_late_and_repeated_watch_events_cannot_make_a_node_positive():
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    standby = next(e for e in w.nodes if e is not master)
    key = leader_key("vipmon")
    mine = w.data.keys[key]
    # A delete of the current term arrives twice at the standby: it only clears its view.
    delete = WatchEvent(EventKind.DELETE, mine, mine.mod_revision + 1)
    standby.apply_event(delete)
    standby.apply_event(delete)
    assert not standby.snapshot.is_master(w.clock.now())
    run(standby.campaign())  # the transaction decides: the key is still held
    assert not standby.snapshot.is_master(w.clock.now())
    assert standby.snapshot.leader_id == master.settings.node_id
    # A stale delete of an older term reaches the master: it keeps its term.
    old = KeyValue(key, b"{}", mine.create_revision - 1, mine.create_revision - 1, 1)
    master.apply_event(WatchEvent(EventKind.DELETE, old, mine.create_revision))
    assert master.role() is Role.MASTER


def test_master_steps_down_when_its_key_is_deleted_or_overwritten():
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    rev = master.watch_revision
    w.data.put(leader_key("vipmon"), b"not json", 0)  # someone overwrote it
    run(master.observe(timeout=0))
    assert master.role() is Role.UNKNOWN
    assert master.snapshot.leader_unknown
    assert rev < master.watch_revision


def test_a_delete_without_its_old_value_makes_the_master_read_and_step_down():
    """etcd omits ``prev_kv`` when the old revision was compacted: the event names no term."""
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    standby = next(e for e in w.nodes if e is not master)
    w.data.delete(leader_key("vipmon"), prev_kv=False)
    run(master.observe(timeout=0))
    assert not master.snapshot.is_master(w.clock.now())
    assert master.role() is not Role.MASTER
    run(standby.observe(timeout=0))
    assert standby.sees_key_free


def test_an_old_put_of_our_key_after_a_lost_delete_is_no_proof_of_hold():
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    start = master.watch_revision
    w.data.delete(leader_key("vipmon"), prev_kv=False)
    master.watch_revision = start - 1  # the batch starts with our own acquire's put
    run(master.observe(timeout=0))
    assert not master.snapshot.is_master(w.clock.now())


def test_garbage_in_the_leader_key_is_held_by_someone_unknown():
    w = World(2)
    w.data.put(leader_key("vipmon"), b"\xff\xfegarbage", 0)
    w.step_all()
    assert w.masters() == []
    for e in w.nodes:
        assert e.role() is Role.UNKNOWN
        assert e.snapshot.leader_unknown
    w.data.delete(leader_key("vipmon"))
    w.step_all()
    assert len(w.masters()) == 1


def test_garbage_member_record_is_skipped():
    w = World(1)
    w.step_all()
    w.data.put("/vipmon/vipmon/members/zz", b"[1,2]", 0)
    w.data.put("/vipmon/vipmon/members/yy", b'{"id": "yy"}', 0)
    run(w.nodes[0].refresh_members())
    assert [m.node_id for m in w.nodes[0].snapshot.members] == ["n1"]


def test_resign_turns_negative_first_then_deletes_then_revokes():
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    standby = next(e for e in w.nodes if e is not master)
    seen: list[tuple[str, bool]] = []
    master.store.on_call = lambda op: seen.append((op, master.snapshot.is_master(w.clock.now())))
    run_virtual(w.clock, master.resign())  # the settle time passes on the fake clock
    # The term's end record goes in while negative and before the key is deleted.
    assert seen == [("acquire", False), ("resign", False), ("revoke", False)]
    assert leader_key("vipmon") not in w.data.keys
    assert master.lease_id is None
    run(standby.campaign())
    assert w.masters() == [standby.settings.node_id]


def test_acquire_whose_reply_was_lost_is_adopted_by_lease():
    w = World(1)
    e = w.nodes[0]
    run(e.ensure_lease())
    w.data.put(leader_key("vipmon"), b'{"id": "n1", "url": "http://x"}', e.lease_id)
    run(e.campaign())
    assert e.role() is Role.MASTER


def test_store_errors_make_a_standby_unknown_once_its_view_is_stale():
    w = World(2)
    w.step_all()
    standby = next(e for e in w.nodes if not e.snapshot.is_master(w.clock.now()))
    for _ in range(3):
        standby.store.fail_next()
        run(standby.renew())
    assert standby.role() is Role.STANDBY  # what it read is still recent
    w.clock.advance(2.1)
    standby.tick()
    assert standby.role() is Role.UNKNOWN
    assert standby.snapshot.last_transition is not None
    assert standby.snapshot.last_transition.to_role is Role.UNKNOWN


def test_an_acquire_reply_for_a_lease_that_was_replaced_is_not_a_win():
    """Found by the model test: the acquire reply lands after the lease expired
    and a new lease was granted; the key died with the old lease."""
    w = World(2)
    e, other = w.nodes
    run(e.ensure_lease())
    run(other.ensure_lease())
    old_lease = e.lease_id

    async def slow_acquire():
        task = asyncio.create_task(e.campaign())
        await asyncio.sleep(0)  # the store has processed the acquire; the reply is "in flight"
        return task

    async def scenario():
        original = e.store.acquire

        gate = asyncio.Event()

        async def delayed(key, value, lease_id, absent=(), same=None):
            result = await original(key, value, lease_id, absent, same)
            await gate.wait()
            return result

        e.store.acquire = delayed  # type: ignore[method-assign]
        task = await slow_acquire()
        for _ in range(2):  # the other node keeps its lease alive ...
            w.clock.advance(1.0)
            await other.renew()
        w.clock.advance(0.6)  # ... while ours expires in the store
        await e.renew()  # keepalive says TTL 0: lease lost
        assert e.lease_id is None
        await e.ensure_lease()  # a new lease, with a valid deadline
        assert e.lease_id != old_lease
        await other.campaign()  # the key is free again: the other node wins
        gate.set()
        await task

    run(scenario())
    now = w.clock.now()
    assert other.snapshot.is_master(now)
    assert not e.snapshot.is_master(now)


def test_the_tick_sleeps_until_the_next_deadline_and_no_longer_than_a_second():
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    # Fresh lease: both deadlines are beyond the one-second cap.
    assert master.tick() == 1.0
    w.clock.advance(master.snapshot.lease_valid_until - w.clock.now() - 0.25)
    wait = master.tick()
    assert 0.25 < wait < 0.26 and master.role() is Role.MASTER
    w.clock.advance(wait)
    master.tick()
    assert master.last_transition is not None
    assert master.last_transition.from_role is Role.MASTER, "the tick saw the lapse"


def test_a_control_key_change_is_a_hint_and_a_member_change_is_not_a_leader_event():
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    term = master.snapshot.term
    # A member key deleted with the very revision of the term: only the key name
    # tells it from the leader key's delete.
    member = KeyValue("/vipmon/vipmon/members/n9", b"{}", term, term, 0)
    master.apply_event(WatchEvent(EventKind.DELETE, member, term + 50))
    assert master.snapshot.is_master(w.clock.now()) and master.snapshot.term == term
    assert not master.control_hint.is_set()
    pause = KeyValue("/vipmon/vipmon/control/pause", b"{}", 101, 101, 0)
    master.apply_event(WatchEvent(EventKind.PUT, pause, 101))
    assert master.control_hint.is_set()
    assert master.snapshot.is_master(w.clock.now())


def test_store_failures_log_a_warning_when_they_begin_or_change_and_info_on_recovery(caplog):
    w = World(1)
    e = w.nodes[0]
    refused = StoreAuthError("etcd https://e:2379: refused the credentials of user 'vipmon'")
    e.store.fail_next(refused, count=3)
    e.store.fail_next(StoreUnavailable("etcd https://e:2379: TLS: certificate verify failed"))
    with caplog.at_level(logging.DEBUG, logger="vipmon.election"):
        for _ in range(5):  # a node that never reached the store: the first failure is loud
            run(e.ensure_lease())
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "failed" in r.getMessage()]
    assert [level for level, _ in said] == ["WARNING", "DEBUG", "DEBUG", "WARNING"]
    assert "refused the credentials" in said[0][1] and "verify failed" in said[3][1]
    assert any(r.levelname == "INFO" and "reachable" in r.getMessage() for r in caplog.records)
    assert e.lease_id is not None


def test_a_standby_logs_each_new_leader_once(caplog):
    w = World(2)
    with caplog.at_level(logging.INFO, logger="vipmon.election"):
        w.step_all()
        for _ in range(3):  # the same leader read again is not news
            for e in w.nodes:
                run(e.verify_hold())
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    standby = next(e for e in w.nodes if e is not master)
    said = [r for r in caplog.records if getattr(r, "event", None) == "leader"]
    assert [r.getMessage() for r in said] == [
        f"leader is {master.settings.node_id} ({master.me.advertise_url}), "
        f"term {master.snapshot.term}"
    ]
    assert standby.snapshot.leader_id == master.settings.node_id


def test_a_lost_lease_is_a_warning_that_names_the_term(caplog):
    w = World(1)
    w.step_all()
    master = w.nodes[0]
    term = master.snapshot.term
    w.clock.advance(2.1)  # past the deadline with no renewal confirmed
    with caplog.at_level(logging.INFO, logger="vipmon.election"):
        run(master.renew())
    [lost] = [r for r in caplog.records if getattr(r, "event", None) == "lease_lost"]
    assert lost.levelname == "WARNING"
    assert f"while holding the leader key (term {term})" in lost.getMessage()
    assert not master.snapshot.is_master(w.clock.now())


def test_the_snapshot_carries_the_store_server_version():
    class VersionedStore(MemoryStore):
        version = ""

        @property
        def server_version(self) -> str:
            return self.version

    clock = FakeClock()
    store = VersionedStore(MemoryData(clock))
    e = Elector(load_settings({"node_id": "n1"}, env={}), store, clock)
    run(e.ensure_lease())
    assert e.snapshot.store_version == ""
    store.version = "etcd 3.4.23"
    run(e.renew())
    assert e.snapshot.store_version == "etcd 3.4.23"


def test_the_local_store_names_its_sqlite_version_without_io(tmp_path):
    import sqlite3

    from app.store.local import LocalStore

    store = LocalStore(tmp_path / "never-opened.sqlite", timeout=1.0)
    assert store.server_version == f"sqlite {sqlite3.sqlite_version}"
    assert not (tmp_path / "never-opened.sqlite").exists()
    assert MemoryStore(MemoryData(FakeClock())).server_version == ""


def test_a_standby_that_saw_a_holder_reads_before_it_tries_to_acquire():
    """On etcd an acquire is a raft write (a WAL fsync) even when it loses: after each quiet
    watch, a standby that last saw another holder reads the key instead, equal priorities
    too, and campaigns once it has seen the key free."""
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    standby = next(e for e in w.nodes if e is not master)
    assert standby.free_key_delay() == 0  # equal priorities: no delay to wait out
    assert _stale_holder(standby)
    assert not _stale_holder(master)
    w.data.delete(leader_key("vipmon"))  # the master's term ended
    run(standby.verify_hold())
    assert standby.sees_key_free
    assert not _stale_holder(standby)  # so the campaign loop acquires at once


def test_a_switchover_record_event_is_folded_unless_older_than_the_state_held():
    """The target acquires on the record's watch event (no read of the control keys); an
    event older than the last read, late or repeated, never brings a record back."""
    w = World(2)
    w.step_all()
    e = w.nodes[0]
    key = "/vipmon/vipmon/control/switchover"
    record = KeyValue(key, b'{"from": "n2", "to": "n1", "term": 3}', 40, 40)
    e.apply_event(WatchEvent(EventKind.PUT, record, 40))
    assert e.control.switchover is not None and e.control.switchover.to_id == "n1"
    assert e.control.switchover.create_revision == 40
    e.apply_event(WatchEvent(EventKind.DELETE, record, 41))
    assert e.control.switchover is None
    e.apply_event(WatchEvent(EventKind.PUT, record, 40))  # late: older than the delete
    assert e.control.switchover is None


def test_a_master_whose_key_was_deleted_steps_down_on_its_next_renewal_without_a_watch():
    """A watch on a frozen etcd member hides a delete; the renewal's read does not."""
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    w.data.delete(leader_key("vipmon"))  # an operator's delete, not seen by any watch
    assert master.holds_key
    run(master.renew())
    assert not master.holds_key and master.role() is not Role.MASTER


def test_a_renewal_read_older_than_what_the_campaign_loop_saw_is_dropped():
    w = World(2)
    w.step_all()
    master = next(e for e in w.nodes if e.snapshot.is_master(w.clock.now()))
    assert master.watch_revision > 2
    master._fold_renewal(Renewal(2.0, None, 1))  # read before the key was even won
    assert master.holds_key and master.role() is Role.MASTER


class _HangingWatch(MemoryStore):
    """The in-memory store whose watch hangs, as one on a frozen etcd member does."""

    async def watch(self, key, start_revision, timeout, prefix=False):  # type: ignore[no-untyped-def]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_a_standby_watch_is_cut_short_when_a_renewal_reads_the_key_free():
    clock = FakeClock()
    data = MemoryData(clock)
    nodes = [
        Elector(load_settings({"node_id": n}, env={}), _HangingWatch(data), clock)
        for n in ("n1", "n2")
    ]

    async def scenario() -> bool:
        for e in nodes:
            await e.ensure_lease()
            await e.campaign()
        standby = nodes[1] if nodes[0].holds_key else nodes[0]
        assert standby.leader is not None and not standby.sees_key_free
        watching = asyncio.create_task(standby.observe(timeout=10.0))
        await asyncio.sleep(0)  # the watch hangs
        data.delete(leader_key("vipmon"))  # the master's term ended; no event arrives
        await standby.renew()
        ok = await asyncio.wait_for(watching, 5)
        return ok and standby.sees_key_free

    assert run(scenario())
