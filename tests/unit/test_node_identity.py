"""Two processes with one ``--node-id``: the newcomer waits; a restart after a crash returns."""

import asyncio
import logging

import pytest

from app.clock import FakeClock
from app.election.elector import Elector
from app.election.records import decode_member, leader_key, member_key
from app.role import Role
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore

KEY = member_key("vipmon", "n1")


def run(coro):
    return asyncio.run(coro)


def node(data: MemoryData, url: str, started: float) -> Elector:
    settings = load_settings({"node_id": "n1", "advertise_url": url}, env={})
    return Elector(settings, MemoryStore(data), data.clock, wall=lambda: started)


def join(e: Elector) -> None:
    run(e.ensure_lease())
    run(e.publish_member())
    run(e.refresh_members())
    run(e.campaign())


@pytest.fixture
def data() -> MemoryData:
    return MemoryData(FakeClock())


def test_a_second_process_with_a_live_id_stays_negative_and_writes_nothing(data, caplog):
    first = node(data, "http://10.0.0.1:8700", 1000.0)
    join(first)
    assert first.role() is Role.MASTER
    caplog.set_level(logging.INFO, logger="vipmon.election")

    second = node(data, "http://10.0.0.2:8700", 2000.0)
    for _ in range(3):
        join(second)
    assert second.role() is Role.STANDBY
    assert not second.eligible()
    assert decode_member(data.keys[KEY].value).advertise_url == "http://10.0.0.1:8700"

    # Even with the leader key gone, the second process does not take the role.
    data.delete(leader_key("vipmon"))
    run(second.campaign())
    assert second.role() is not Role.MASTER
    assert leader_key("vipmon") not in data.keys

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "node id" in r.msg]
    assert len(warnings) == 1
    assert "n1" in warnings[0].getMessage()
    assert "http://10.0.0.1:8700" in warnings[0].getMessage()


def test_the_same_url_with_another_start_time_is_another_process(data):
    first = node(data, "http://10.0.0.1:8700", 1000.0)
    join(first)
    second = node(data, "http://10.0.0.1:8700", 1001.0)
    join(second)
    assert second.id_taken_by is not None
    assert not second.eligible()
    assert decode_member(data.keys[KEY].value).started_at == 1000.0


def test_a_restart_after_a_crash_comes_back_once_the_old_record_expires(data, caplog):
    crashed = node(data, "http://10.0.0.1:8700", 1000.0)
    join(crashed)
    assert crashed.role() is Role.MASTER
    # The process dies: nothing renews its lease. Its successor starts at once.
    restarted = node(data, "http://10.0.0.1:8700", 1005.0)
    join(restarted)
    assert restarted.role() is Role.STANDBY and not restarted.eligible()
    caplog.set_level(logging.INFO, logger="vipmon.election")
    data.clock.advance(crashed.settings.lease_ttl + 0.1)  # one TTL: the old lease expires
    run(restarted.renew())
    join(restarted)
    assert restarted.id_taken_by is None
    assert restarted.role() is Role.MASTER
    assert decode_member(data.keys[KEY].value).started_at == 1005.0
    assert any("ours again" in r.getMessage() for r in caplog.records)


def test_our_own_record_from_an_earlier_lease_is_ours(data):
    e = node(data, "http://10.0.0.1:8700", 1000.0)
    join(e)
    old_lease = e.lease_id
    e.lose_lease("test: lease given up locally while the store still has it")
    run(e.ensure_lease())
    assert e.lease_id != old_lease
    assert data.keys[KEY].lease == old_lease
    assert run(e.publish_member())
    assert data.keys[KEY].lease == e.lease_id
    assert e.id_taken_by is None and e.eligible()
