"""The deadline rule, on a fake clock: valid_until = t_send + TTL - margin."""

import asyncio
import math

import pytest

from app.clock import FakeClock
from app.election.elector import Elector
from app.election.lease import LeaseDeadline
from app.errors import SettingsError, StoreUnavailable
from app.role import Role
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore


def make(clock: FakeClock, data: MemoryData | None = None, node: str = "n1"):
    settings = load_settings({"node_id": node, "backend": "local"}, env={})
    store = MemoryStore(data or MemoryData(clock))
    return Elector(settings, store, clock), store


def run(coro):
    return asyncio.run(coro)


def test_deadline_starts_at_send_time_not_reply_time():
    d = LeaseDeadline(margin=0.5)
    d.on_reply(t_send=10.0, ttl=2.0)
    assert d.valid_until == 11.5
    assert d.valid(11.49)
    assert not d.valid(11.5)


def test_zero_ttl_means_gone_now():
    d = LeaseDeadline(margin=0.5)
    d.on_reply(10.0, 2.0)
    d.on_reply(10.5, 0.0)
    assert d.valid_until == -math.inf
    assert not d.valid(10.6)


def test_an_older_send_never_moves_the_deadline_back():
    d = LeaseDeadline(margin=0.5)
    d.on_reply(12.0, 2.0)
    d.on_reply(11.0, 2.0)
    assert d.valid_until == 13.5


def test_margin_must_be_positive():
    with pytest.raises(SettingsError):
        LeaseDeadline(0)


def test_slow_reply_counts_from_send():
    clock = FakeClock()
    elector, store = make(clock)
    run(elector.ensure_lease())
    run(elector.campaign())
    assert elector.role() is Role.MASTER
    store.on_call = lambda op: clock.advance(0.4) if op == "keepalive" else None
    t_send = clock.now()
    run(elector.renew())
    assert elector.deadline.valid_until == pytest.approx(t_send + 2 - 0.5)


def test_late_renewal_makes_the_node_negative():
    clock = FakeClock()
    elector, _ = make(clock)
    run(elector.ensure_lease())
    run(elector.campaign())
    assert elector.role() is Role.MASTER
    clock.advance(1.49)
    assert elector.snapshot.is_master(clock.now())
    clock.advance(0.02)  # past t_send + 2 - 0.5, no renewal sent
    assert not elector.snapshot.is_master(clock.now())
    assert elector.role() is not Role.MASTER
    old_term = elector.snapshot.term
    # A renewal attempted after the deadline gives the lease up (and revokes it),
    # so that a lease kept alive by replies that come too late cannot block others.
    run(elector.renew())
    assert elector.lease_id is None
    assert elector.role() is not Role.MASTER
    run(elector.ensure_lease())
    run(elector.campaign())
    assert elector.role() is Role.MASTER
    assert elector.snapshot.term > old_term


def test_an_error_never_extends_the_deadline():
    clock = FakeClock()
    elector, store = make(clock)
    run(elector.ensure_lease())
    run(elector.campaign())
    before = elector.deadline.valid_until
    clock.advance(1.0)
    store.fail_next(StoreUnavailable("down"))
    assert run(elector.renew()) is False
    assert elector.deadline.valid_until == before
    clock.advance(0.6)
    assert elector.role() is Role.UNKNOWN


def test_a_missing_ttl_makes_the_node_negative_at_once():
    clock = FakeClock()
    data = MemoryData(clock)
    elector, _store = make(clock, data)
    run(elector.ensure_lease())
    run(elector.campaign())
    assert elector.role() is Role.MASTER
    data.drop_lease(elector.lease_id)  # the store lost the lease: keepalive gets TTL 0
    run(elector.renew())
    assert elector.role() is not Role.MASTER
    assert elector.lease_id is None
    assert not elector.snapshot.holds_key
