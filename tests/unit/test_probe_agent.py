"""The agent-check responder: its reply table, and one line per TCP connection."""

import asyncio
import socket
from dataclasses import dataclass, replace

import pytest

from app.clock import FakeClock
from app.probe.agent import AgentCheckServer
from app.probe.answer import agent_reply
from app.role import Snapshot

NOW = 1000.0
MASTER = Snapshot(
    node_id="n1",
    backend="local",
    holds_key=True,
    term=7,
    lease_valid_until=NOW + 1,
    store_ok_until=NOW + 2,
    store_reachable=True,
    leader_id="n1",
    leader_term=7,
)
STANDBY = replace(MASTER, node_id="n2", holds_key=False)
DRAINING = replace(MASTER, draining=True)


@dataclass
class Holder:
    snapshot: Snapshot


@pytest.mark.parametrize(
    ("snap", "reply"),
    [
        (MASTER, "up ready\n"),
        (DRAINING, "drain\n"),
        (replace(STANDBY, maintenance=True), "maint\n"),
        (STANDBY, "down ready #ROLE=STANDBY node=n2 term=7 leader=n1\n"),
        (replace(STANDBY, store_ok_until=NOW), "down ready #ROLE=UNKNOWN node=n2 term=7\n"),
        (replace(MASTER, shutting_down=True), "down ready #ROLE=UNKNOWN node=n1 term=7\n"),
    ],
)
def test_reply_table(snap, reply):
    assert agent_reply(snap, NOW) == reply


def test_master_reply_fails_closed_when_the_lease_deadline_passes():
    assert agent_reply(MASTER, NOW + 0.999) == "up ready\n"
    assert agent_reply(MASTER, NOW + 1).startswith("down ")


def test_every_reply_is_one_line_of_known_words():
    words = {"up", "down", "ready", "drain", "maint"}
    for snap in (MASTER, STANDBY, DRAINING):
        line = agent_reply(snap, NOW)
        assert line.endswith("\n") and line.count("\n") == 1
        head = line.split("#", 1)[0].split()
        assert set(head) <= words


async def _read_line(port: int, send: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if send:
        writer.write(send)
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    return data


def test_server_answers_each_connection_from_the_snapshot_at_that_moment():
    async def go():
        holder, clock = Holder(MASTER), FakeClock(NOW)
        server = AgentCheckServer(holder, clock, "127.0.0.1", 0)
        await server.start()
        try:
            first = await _read_line(server.port)
            clock.advance(2.0)  # the lease deadline passes with no renewal
            second = await _read_line(server.port, send=b"vipmon_nodes/n1\n")
            holder.snapshot = replace(STANDBY, store_ok_until=NOW + 5)
            third = await _read_line(server.port)
        finally:
            await server.close()
            await server.close()
        return first, second, third

    first, second, third = asyncio.run(go())
    assert first == b"up ready\n"
    assert second == b"down ready #ROLE=UNKNOWN node=n1 term=7\n"
    assert third.startswith(b"down ready #ROLE=STANDBY node=n2")


def test_a_taken_port_raises_oserror():
    async def go(port):
        server = AgentCheckServer(Holder(MASTER), FakeClock(NOW), "127.0.0.1", port)
        with pytest.raises(OSError):
            await server.start()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        asyncio.run(go(taken.getsockname()[1]))


def test_port_before_start_is_an_error():
    with pytest.raises(RuntimeError):
        _ = AgentCheckServer(Holder(MASTER), FakeClock(NOW), "127.0.0.1", 0).port
