"""The term history: its records, the view with gaps, and the elector's steps that write it."""

import asyncio
import logging
from dataclasses import replace

from app.clock import FakeClock
from app.election.elector import Elector
from app.election.history import (
    EXPIRY_SLACK,
    HISTORY_MAX,
    LEASE_EXPIRED,
    LEASE_LOST,
    SWITCHOVER,
    Ending,
    History,
    TermBegin,
    TermEnd,
    begin_key,
    decode_begin,
    decode_end,
    encode_begin,
    encode_end,
    end_key,
    history_prefix,
)
from app.http.app import create_app
from app.role import Role, Snapshot, TermRecord
from app.settings import load_settings
from app.store.base import KeyValue
from app.store.memory import MemoryData, MemoryStore
from tests.chaos.sim import run_virtual
from tests.support.asgi import AsgiClient
from tests.unit.test_http import MASTER, NOW, Holder


def run(coro):
    return asyncio.run(coro)


def kv(key: str, value: bytes, rev: int) -> KeyValue:
    return KeyValue(key, value, rev, rev)


# -- records and the in-memory view -------------------------------------------


def test_records_round_trip_and_garbage_is_none():
    begin = TermBegin(7, "n1", "http://n1:8700", 100.5)
    end = TermEnd(7, "n1", "http://n1:8700", 130.0, SWITCHOVER, "n2", "switchover to n2", "n1")
    assert decode_begin(encode_begin(begin)) == begin
    assert decode_end(encode_end(end)) == end
    for raw in (b"\xff", b"[]", b'{"term": 0, "id": "n1", "url": "", "began": 1}', b"{}"):
        assert decode_begin(raw) is None
        assert decode_end(raw) is None
    assert decode_begin(b'{"term": true, "id": "n1", "url": "", "began": 1}') is None
    assert decode_end(encode_end(end).replace(b'"how": "switchover"', b'"how": ""')) is None


def test_the_view_is_newest_first_with_the_gap_before_each_term():
    h = History("c")
    h.load(
        [
            kv(begin_key("c", 3), encode_begin(TermBegin(3, "n1", "u1", 100.0)), 3),
            kv(
                end_key("c", 3),
                encode_end(TermEnd(3, "n1", "u1", 110.0, "resigned", None, "", "n1")),
                4,
            ),
            kv(begin_key("c", 9), encode_begin(TermBegin(9, "n2", "u2", 110.25)), 9),
        ]
    )
    assert [r.term for r in h.view] == [9, 3]
    newest, oldest = h.view
    assert newest.ended is None and newest.how is None and newest.gap == 0.25
    assert oldest.how == "resigned" and oldest.gap is None


def test_a_term_with_only_an_end_record_still_names_its_holder():
    h = History("c")
    end = TermEnd(5, "n3", "u3", 50.0, LEASE_EXPIRED, None, "no end record", "n1")
    h.fold(kv(end_key("c", 5), encode_end(end), 6))
    assert h.view == (TermRecord(5, "n3", "u3", None, 50.0, LEASE_EXPIRED, None, "no end record"),)


def test_garbage_and_a_term_that_does_not_match_its_key_are_left_out():
    h = History("c")
    wrong = encode_begin(TermBegin(8, "n1", "u", 1.0))
    garbage = h.load([kv(begin_key("c", 3), b"\x00junk", 3), kv(begin_key("c", 4), wrong, 4)])
    assert [g.key for g in garbage] == [begin_key("c", 3), begin_key("c", 4)]
    assert h.view == ()
    assert h.fold(kv(history_prefix("c") + "other", b"{}", 5)) is False


def test_only_the_last_thousand_terms_are_kept():
    h = History("c")
    kvs = [
        kv(begin_key("c", t), encode_begin(TermBegin(t, "n1", "u", float(t))), t)
        for t in range(1, HISTORY_MAX + 4)
    ]
    h.load(kvs)
    assert len(h.view) == HISTORY_MAX and h.view[-1].term == 4
    assert sorted(h.excess()) == [(begin_key("c", t), t) for t in (1, 2, 3)]
    h.fold(kvs[0], deleted=True)
    assert len(h.excess()) == 2


# -- the elector's steps --------------------------------------------------------


class World:
    def __init__(self, n: int = 2) -> None:
        self.clock = FakeClock()
        self.wall = [1_780_000_000.0]
        self.data = MemoryData(self.clock)
        self.nodes = [self.node(f"n{i}") for i in range(1, n + 1)]

    def node(self, node_id: str) -> Elector:
        settings = load_settings({"node_id": node_id, "lease_ttl": 5}, env={})
        return Elector(settings, MemoryStore(self.data), self.clock, wall=lambda: self.wall[0])

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.wall[0] += seconds

    def first_master(self) -> tuple[Elector, Elector]:
        for e in self.nodes:
            run(e.ensure_lease())
        run(self.nodes[0].campaign())
        assert self.nodes[0].role() is Role.MASTER
        run(self.nodes[1].verify_hold())
        return self.nodes[0], self.nodes[1]


def flush(e: Elector) -> None:
    """What the history writer does: write every queued record, oldest first."""
    for _ in range(len(e.history_writes)):
        assert run(e.write_history(*e.history_writes[0]))
        e.history_writes.popleft()


def test_a_planned_release_records_how_before_the_key_goes_and_the_next_master_says_so():
    w = World()
    old, new = w.first_master()
    flush(old)
    term = old.term
    seen: list[str] = []
    old.store.on_call = seen.append
    w.advance(2.0)
    run_virtual(w.clock, old.handover.release("switchover to n2", Ending(SWITCHOVER, "n2")))
    assert seen.index("acquire") < seen.index("resign"), "the end record goes in first"
    assert old.role() is Role.STANDBY and not old.history_writes
    # The standby learns the key is free by a read, which skips the watch past the record.
    run(new.verify_hold())
    assert run(new.learn_how_it_ended()) and term in new.history.ends
    run(new.campaign())
    assert new.role() is Role.MASTER
    assert new.last_transition is not None
    assert new.last_transition.reason == (
        f"acquired the leader key (term {new.term}) after term {term} of n1, "
        "which ended: switchover to n2"
    )
    flush(new)
    for e in (old, new):
        assert run(e.load_history())
        first, second = e.snapshot.history[1], e.snapshot.history[0]
        assert (first.term, first.node_id, first.how, first.to) == (term, "n1", SWITCHOVER, "n2")
        assert (second.term, second.node_id, second.ended) == (new.term, "n2", None)
        assert second.gap is not None and second.gap >= 0


def test_a_crashed_master_s_term_is_recorded_by_the_next_master_as_lease_expired():
    w = World()
    old, new = w.first_master()
    flush(old)
    term = old.term
    for _ in range(200):  # the master is gone: only the standby renews, until the key expires
        w.advance(0.1)
        run(new.renew())
        run(new.verify_hold())
        if new.sees_key_free:
            break
    assert new.sees_key_free
    assert run(new.learn_how_it_ended()) and term not in new.history.ends
    run(new.campaign())
    assert new.role() is Role.MASTER
    assert new.last_transition is not None
    assert new.last_transition.reason.endswith(
        f"after term {term} of n1, which ended: {LEASE_EXPIRED}"
    )
    flush(new)
    end = new.history.ends[term]
    assert (end.how, end.node_id, end.by) == (LEASE_EXPIRED, "n1", "n2")
    # The old master, back, tells its own story too late: the first account stands.
    run(old.write_history(*old.end_record(term, old.me, w.wall[0], Ending(LEASE_LOST), "late")))
    assert w.data.keys[end_key("vipmon", term)].value == encode_end(end)


def crash(w: World, old: Elector, new: Elector) -> float:
    """The master renews once more and dies; the standby runs until it holds the role.

    Returns the wall time of the dead master's last renewal: it answered positive
    until then at least, so the real outage began no earlier.
    """
    run(old.renew())
    died = w.wall[0]
    for _ in range(200):
        w.advance(0.1)
        run(new.renew())
        run(new.verify_hold())
        if new.sees_key_free:
            break
    assert new.sees_key_free
    run(new.learn_how_it_ended())
    run(new.campaign())
    assert new.role() is Role.MASTER
    flush(new)
    return died


def test_a_crash_gap_is_a_range_whose_upper_end_bounds_the_real_outage():
    """Issue 20, finding 13: the gap after a crash was 'began - seen deletion' alone,
    milliseconds, where the cluster had no master for about the TTL."""
    w = World()
    old, new = w.first_master()
    flush(old)
    term = old.term
    died = crash(w, old, new)
    end = new.history.ends[term]
    assert end.how == LEASE_EXPIRED and end.ended_earliest is not None
    assert end.ended_earliest == end.ended - 5 - EXPIRY_SLACK  # TTL 5 s in this world
    record = new.snapshot.history[0]
    assert record.term == new.term and record.began is not None
    real = record.began - died
    assert record.gap is not None and record.gap_max is not None
    assert record.gap <= real <= record.gap_max
    assert record.gap_max - record.gap == 5 + EXPIRY_SLACK


def test_a_crash_the_successor_did_not_see_is_bounded_by_the_term_s_start():
    """A node that never saw the old term's key (it started after the crash) cannot
    place the expiry: the old master cannot have stopped before its term began."""
    w = World()
    old, _ = w.first_master()
    flush(old)
    term, began = old.term, old.history.begins[old.term].began
    w.advance(60.0)
    w.data.drop_lease(old.lease_id)  # the crash, long ago as the newcomer sees it
    late = w.node("n3")
    assert run(late.load_history()) and run(late.ensure_lease())
    assert run(late.verify_hold()) and late.sees_key_free
    run(late.campaign())
    flush(late)
    end = late.history.ends[term]
    assert end.how == LEASE_EXPIRED and end.ended_earliest == began
    assert late.snapshot.history[0].gap_max == late.snapshot.history[0].began - began


def test_a_planned_release_has_an_exact_gap_and_no_range():
    w = World()
    old, new = w.first_master()
    flush(old)
    term = old.term
    run_virtual(w.clock, old.handover.release("switchover to n2", Ending(SWITCHOVER, "n2")))
    run(new.verify_hold())
    run(new.learn_how_it_ended())
    run(new.campaign())
    flush(new)
    assert new.history.ends[term].ended_earliest is None
    newest = new.snapshot.history[0]
    assert newest.gap is not None and newest.gap_max is None


def test_an_end_record_s_earliest_end_round_trips_and_garbage_there_is_left_out():
    end = TermEnd(7, "n1", "u", 130.0, LEASE_EXPIRED, None, "", "n2", ended_earliest=127.5)
    assert decode_end(encode_end(end)) == end
    old = TermEnd(7, "n1", "u", 130.0, LEASE_EXPIRED, None, "", "n2")
    assert b"ended_earliest" not in encode_end(old) and decode_end(encode_end(old)) == old
    for bad in (b"1e400", b"-1", b"true", b'"x"', b"131.0"):  # after "ended" is garbage too
        raw = encode_end(end).replace(b"127.5", bad)
        assert decode_end(raw) == old, bad


def test_a_master_that_loses_its_lease_records_lease_lost_itself():
    w = World()
    old, _ = w.first_master()
    flush(old)
    term = old.term
    w.data.drop_lease(old.lease_id)  # the store let the lease go
    run(old.renew())
    assert old.role() is not Role.MASTER
    flush(old)
    end = old.history.ends[term]
    assert (end.how, end.by) == (LEASE_LOST, "n1")
    assert end.detail == "lease expired in the store"


def test_the_master_prunes_terms_beyond_the_last_thousand_and_garbage_is_logged(caplog):
    w = World(1)
    e = w.nodes[0]
    for t in range(1, HISTORY_MAX + 3):
        w.data.put(begin_key("vipmon", t), encode_begin(TermBegin(t, "n9", "u", float(t))), 0)
    w.data.put(end_key("vipmon", 1), b"not json", 0)
    with caplog.at_level(logging.WARNING, logger="vipmon.election"):
        assert run(e.load_history())
    assert any("not a vipmon record" in r.message for r in caplog.records)
    for _ in range(10):
        if not run(e.prune_history()):
            break
    kept = [k for k in w.data.keys if k.startswith(history_prefix("vipmon"))]
    assert len(kept) == HISTORY_MAX + 1  # the garbage key is not a term and is left alone
    assert begin_key("vipmon", 1) not in kept and begin_key("vipmon", 3) in kept


def test_history_route_is_newest_first_limited_and_refuses_a_bad_limit():
    records = tuple(
        TermRecord(
            t,
            f"n{t}",
            f"http://n{t}",
            NOW + t,
            None if t == 3 else NOW + t + 0.5,
            None if t == 3 else "resigned",
            None,
            "",
            0.5 if t > 1 else None,
        )
        for t in (3, 2, 1)
    )
    client = AsgiClient(
        create_app(Holder(replace(MASTER, history=records)), FakeClock(NOW), live_window=3.0)
    )
    body = client.get("/history?limit=2").json()
    assert body["node"] == "n1"
    assert [t["term"] for t in body["terms"]] == [3, 2]
    assert body["terms"][0]["ended"] is None and body["terms"][0]["failover_gap_ms"] == 500
    assert body["terms"][0]["failover_gap_max_ms"] is None
    assert body["terms"][1]["how"] == "resigned" and body["terms"][1]["ended"].endswith("Z")
    assert len(client.get("/history").json()["terms"]) == 3
    bad = client.get("/history?limit=0")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "limit"]
    assert Snapshot("n1", "local").history == ()


def test_history_route_gives_a_crash_gap_as_a_range():
    crashed = TermRecord(8, "n2", "http://n2", NOW, None, None, None, "", 0.005, 2.505)
    client = AsgiClient(
        create_app(Holder(replace(MASTER, history=(crashed,))), FakeClock(NOW), live_window=3.0)
    )
    [term] = client.get("/history").json()["terms"]
    assert (term["failover_gap_ms"], term["failover_gap_max_ms"]) == (5, 2505)


def test_vipmon_history_prints_a_crash_gap_as_a_range():
    from app.timeline import format_history

    term = {"term": 8, "node": "n2", "began": "2026-12-02T18:23:13.663000Z", "ended": None}
    text = format_history(
        {
            "node": "n2",
            "terms": [
                {**term, "failover_gap_ms": 5, "failover_gap_max_ms": 2505},
                {**term, "term": 3, "failover_gap_ms": 21, "failover_gap_max_ms": None},
            ],
        }
    )
    rows = {line.split()[0]: line for line in text.splitlines()[1:3]}
    assert rows["8"].endswith("0.005 to 2.505 s")
    assert rows["3"].endswith("0.021 s")
