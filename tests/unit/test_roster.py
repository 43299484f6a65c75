"""The roster (app/election/roster.py): members stay listed after their member record goes,
until forgotten; only the master writes it; garbage in it harms nothing."""

import asyncio
import json
import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.clock import FakeClock
from app.election.elector import Elector
from app.election.history import decode_end
from app.election.records import WALL_TIME_MAX, member_key
from app.election.roster import RosterEntry, decode_entry, encode_entry, roster_key
from app.errors import Conflict, SettingsError, StoreUnavailable
from app.http.app import create_app
from app.http.models import utc
from app.role import Role
from app.settings import load_settings
from app.store.base import EventKind, KeyValue, WatchEvent
from app.store.memory import MemoryData, MemoryStore
from tests.support.asgi import AsgiClient
from tests.unit.test_decoders import BAD_TIMES, json_values, raw_values

T0 = 1_780_000_000.0


def run(coro):
    return asyncio.run(coro)


class World:
    def __init__(self, n: int = 3, **extra) -> None:
        self.clock = FakeClock()
        self.wall = [T0]
        self.data = MemoryData(self.clock)
        self.extra = extra
        self.nodes = [self.node(f"n{i}") for i in range(1, n + 1)]

    def node(self, node_id: str) -> Elector:
        given = {"node_id": node_id, "advertise_url": f"http://{node_id}:8700", "lease_ttl": 5}
        settings = load_settings({**given, **self.extra}, env={})
        return Elector(settings, MemoryStore(self.data), self.clock, wall=lambda: self.wall[0])

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Let ``seconds`` pass, every live node renewing its lease each ``step``."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.wall[0] += step
            for e in self.nodes:
                assert run(e.renew())

    def start(self) -> Elector:
        """Every node holds a lease and a member record; n1 is master; all read the roster."""
        for e in self.nodes:
            assert run(e.ensure_lease()) and run(e.publish_member())
        run(self.nodes[0].campaign())
        assert self.nodes[0].role() is Role.MASTER
        self.round()
        return self.nodes[0]

    def round(self) -> None:
        """One members-loop round on every live node, the master first."""
        for e in self.nodes:
            if e.lease_id is not None:
                run(e.refresh_members())
                assert run(e.roster.refresh())

    def crash(self, e: Elector) -> None:
        """The node dies: its lease (and its member record) goes; it runs no more."""
        self.data.drop_lease(e.lease_id)
        e.lease_id = None
        self.nodes.remove(e)

    def roster(self) -> dict[str, RosterEntry]:
        prefix = roster_key("vipmon", "")
        found = {
            k: decode_entry(kv.value) for k, kv in self.data.keys.items() if k.startswith(prefix)
        }
        return {k.removeprefix(prefix): v for k, v in found.items() if v is not None}


def test_the_master_lists_every_member_it_sees():
    w = World()
    w.start()
    assert sorted(w.roster()) == ["n1", "n2", "n3"]
    entry = w.roster()["n2"]
    assert (entry.url, entry.first_seen, entry.missing_since) == ("http://n2:8700", T0, None)
    assert all(e.snapshot.missing == () for e in w.nodes)


def test_a_crashed_member_stays_listed_as_missing_on_every_node_and_a_new_one():
    w = World()
    master = w.start()
    dead = w.nodes[2]
    w.crash(dead)
    w.advance(3.0)
    w.round()
    assert w.roster()["n3"].missing_since == T0 + 3.0
    for e in w.nodes:
        [missing] = e.snapshot.missing
        assert (missing.node_id, missing.url, missing.missing_since) == (
            "n3",
            dead.me.advertise_url,
            T0 + 3.0,
        )
    late = w.node("n4")  # started after the crash: it learns it from the store
    assert run(late.ensure_lease()) and run(late.refresh_members()) and run(late.roster.refresh())
    assert [m.node_id for m in late.snapshot.missing] == ["n3"]
    body = AsgiClient(create_app(master, w.clock, live_window=3.0)).get("/cluster").json()
    assert [m["id"] for m in body["members"]] == ["n1", "n2"]
    assert body["missing"] == [
        {
            "id": "n3",
            "url": "http://n3:8700",
            "first_seen": "2026-05-28T20:26:40Z",
            "missing_since": "2026-05-28T20:26:43Z",
        }
    ]


def test_a_member_that_comes_back_is_no_longer_missing():
    w = World()
    w.start()
    dead = w.nodes[2]
    w.crash(dead)
    w.round()
    assert w.roster()["n3"].missing_since is not None
    back = w.node("n3")
    w.nodes.append(back)
    assert run(back.ensure_lease()) and run(back.publish_member())
    w.round()
    assert w.roster()["n3"].missing_since is None and w.roster()["n3"].first_seen == T0
    assert all(e.snapshot.missing == () for e in w.nodes)


def test_only_the_master_writes_the_roster():
    w = World()
    w.start()
    w.crash(w.nodes[2])
    standby = w.nodes[1]
    standby.store.calls.clear()
    run(standby.refresh_members())
    assert run(standby.roster.refresh())
    assert standby.store.calls == ["get_prefix", "get_prefix"]  # members, roster: reads only
    assert [m.missing_since for m in standby.snapshot.missing] == [None]  # not marked yet
    w.round()
    assert [m.node_id for m in standby.snapshot.missing] == ["n3"]


def test_the_master_forgets_a_member_missing_longer_than_member_forget_after():
    w = World(member_forget_after=60)
    w.start()
    w.crash(w.nodes[2])
    w.round()
    w.advance(59.0)
    w.round()
    assert "n3" in w.roster()
    w.advance(1.0)
    w.round()
    assert "n3" not in w.roster()
    w.round()
    assert all(e.snapshot.missing == () for e in w.nodes)


def test_member_forget_after_zero_never_forgets():
    w = World(member_forget_after=0, lease_ttl=3600)
    w.start()
    w.crash(w.nodes[2])
    w.round()
    w.advance(30 * 86400.0, step=3000.0)
    w.round()
    assert "n3" in w.roster() and w.nodes[0].role() is Role.MASTER


def test_forget_deletes_a_missing_member_and_refuses_a_live_or_unknown_one():
    w = World()
    master = w.start()
    w.crash(w.nodes[2])
    w.round()
    standby = w.nodes[1]
    with pytest.raises(Conflict, match="n2 is alive"):
        run(standby.roster.forget("n2"))
    with pytest.raises(Conflict, match="n9 is not in the roster"):
        run(standby.roster.forget("n9"))
    assert run(standby.roster.forget("n3")) == {"node": "n3", "forgotten": True}
    assert "n3" not in w.roster() and standby.snapshot.missing == ()
    w.round()
    assert master.snapshot.missing == () and "n3" not in w.roster()
    standby.store.fail_next(StoreUnavailable("etcd down"))
    with pytest.raises(StoreUnavailable):
        run(standby.roster.forget("n3"))


def test_a_member_gone_between_the_masters_read_and_its_write_is_not_listed():
    w = World()
    master = w.nodes[0]
    for e in w.nodes:
        assert run(e.ensure_lease())
    run(master.campaign())
    assert run(w.nodes[1].publish_member())

    def vanish(op: str) -> None:
        if op == "acquire" and member_key("vipmon", "n2") in w.data.keys:
            w.data.drop_lease(w.nodes[1].lease_id)

    assert run(master.refresh_members())  # the members loop's read, n2 still there
    master.store.on_call = vanish
    assert run(master.roster.refresh())
    assert "n2" not in w.roster()


def test_garbage_in_the_roster_harms_nothing_and_is_logged(caplog):
    w = World()
    master = w.start()
    prefix = roster_key("vipmon", "")
    garbage = {
        "deep": b"[" * 100_000,
        "nan": b'{"id": "nan", "url": "u", "first_seen": NaN, "missing_since": null}',
        "late": b'{"id": "late", "url": "u", "first_seen": 1e20, "missing_since": null}',
        "big": b'{"id": "big", "url": "u", "first_seen": 1, "missing_since": 1e400}',
        "other": encode_entry(RosterEntry("someone-else", "u", T0)),
        "bytes": b"\xff\xfe",
    }
    for name, value in garbage.items():
        w.data.put(prefix + name, value, 0)
    with caplog.at_level(logging.WARNING, logger="vipmon.election"):
        w.round()
    assert sorted(w.roster()) == ["n1", "n2", "n3", "other"]  # decodable, under a wrong key
    assert master.snapshot.missing == ()
    assert sum("not a vipmon record" in r.message for r in caplog.records) >= len(garbage)
    for name in garbage:
        kv = KeyValue(prefix + name, w.data.keys[prefix + name].value, 9, 9)
        master.members_hint.clear()
        master.apply_event(WatchEvent(EventKind.PUT, kv, 9))
        assert master.members_hint.is_set()


def test_decode_entry_round_trips_and_refuses_bad_times():
    entry = RosterEntry("n1", "http://n1:8700", T0, T0 + 5)
    assert decode_entry(encode_entry(entry)) == entry
    assert decode_entry(encode_entry(RosterEntry("n1", "u", T0))) == RosterEntry("n1", "u", T0)
    for bad in (b'"x"', b"-1", b"true", b"1e300"):
        assert decode_entry(encode_entry(entry).replace(str(T0 + 5).encode(), bad)) is None


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "31536001", "soon"])
def test_member_forget_after_is_refused_naming_the_field(value):
    with pytest.raises(SettingsError) as caught:
        load_settings({"member_forget_after": value}, env={})
    assert caught.value.field == "member_forget_after"


@given(raw_values)
def test_no_value_makes_the_roster_decoder_raise(raw: bytes):
    entry = decode_entry(raw)
    for seconds in (getattr(entry, "first_seen", 0.0), getattr(entry, "missing_since", 0.0)):
        if seconds is not None:
            utc(seconds).isoformat()


@given(st.sampled_from(["first_seen", "missing_since"]), json_values | st.sampled_from(BAD_TIMES))
def test_a_roster_time_out_of_range_is_garbage(field: str, value: object):
    template = {"id": "n1", "url": "u", "first_seen": 1.0, "missing_since": None}
    entry = decode_entry(json.dumps({**template, field: value}, allow_nan=True).encode())
    if entry is not None:
        seconds = getattr(entry, field)
        assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= WALL_TIME_MAX)


@given(json_values | st.sampled_from(BAD_TIMES))
def test_an_end_record_s_earliest_end_is_a_wall_time_or_left_out(value: object):
    template = {"term": 3, "id": "n1", "url": "u", "ended": 9.0, "how": "x", "detail": "", "by": ""}
    end = decode_end(json.dumps({**template, "ended_earliest": value}, allow_nan=True).encode())
    assert end is not None
    assert end.ended_earliest is None or 0 <= end.ended_earliest <= end.ended


def test_the_masters_upkeep_reads_the_members_once_per_round():
    w = World()
    master = w.start()
    w.round()  # the roster is up to date: nothing to write
    master.store.calls.clear()
    run(master.refresh_members())
    assert run(master.roster.refresh())
    assert master.store.calls == ["get_prefix", "get_prefix"]  # members, roster
