"""Regression tests for what the chaos run found, each at the lowest level that shows it.

* A master whose etcd round trips take longer than the store timeout keeps its
  lease alive (every keepalive reaches etcd, no reply comes back in time), so
  it can never answer positive and no other node can take the role: no master
  at all for as long as the slow link lasts. Shown on the real election loops
  over the in-memory store, in virtual time.
* The monitor's connections kept Nagle's algorithm on, so every answer on a
  kept-alive connection waited ~40 ms for a delayed ACK. Shown on the
  listening socket the server builds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from app.clock import FakeClock
from app.election.elector import Elector
from app.election.runner import run_election
from app.errors import StoreUnavailable
from app.server import listen_socket
from app.settings import load_settings
from app.store.memory import MemoryData, MemoryStore
from tests.chaos.sim import Relay, virtual_time_loop
from tests.support.ports import free_port

TTL = 2.0
NODE_BOUND = 10.0  # tests/chaos/engine.py: a master within this after a node fault


class SlowLink(Relay):
    """While ``slow``: each call reaches the store, but its reply misses the timeout.

    The in-memory watch never waits; here it polls, as a real watch would wait.
    """

    def __init__(self, inner: MemoryStore, timeout: float) -> None:
        super().__init__(inner)
        self.timeout = timeout
        self.slow = False

    async def call(self, op: str, send: Callable[[], Awaitable[Any]]) -> Any:
        result = await send()
        if self.slow:
            await asyncio.sleep(self.timeout)
            raise StoreUnavailable(f"{op}: no reply within {self.timeout} s")
        return result

    async def watch(
        self, key: str, start_revision: int, timeout: float, prefix: bool = False
    ) -> list[Any]:
        for _ in range(int(timeout / 0.05) + 1):
            events = await super().watch(key, start_revision, timeout, prefix)
            if events:
                return events
            await asyncio.sleep(0.05)
        return []


def test_a_master_whose_replies_come_too_late_gives_way():
    clock = FakeClock()
    data = MemoryData(clock)
    links: dict[str, SlowLink] = {}
    electors: list[Elector] = []
    for node_id in ("n1", "n2", "n3"):
        cfg = load_settings({"node_id": node_id, "advertise_url": f"http://{node_id}"}, env={})
        links[node_id] = SlowLink(MemoryStore(data), cfg.effective_store_timeout)
        electors.append(Elector(cfg, links[node_id], clock))

    async def master_other_than(old: str | None, within: float) -> str | None:
        """Sample every 10 ms of virtual time; never two masters at once."""
        for _ in range(int(within / 0.01)):
            now = clock.now()
            masters = [e.settings.node_id for e in electors if e.snapshot.is_master(now)]
            assert len(masters) <= 1, f"two masters at {now}: {masters}"
            if masters and masters[0] != old:
                return masters[0]
            await asyncio.sleep(0.01)
        return None

    async def scenario() -> tuple[str | None, float]:
        stop = asyncio.Event()
        runs = [asyncio.create_task(run_election(e, stop)) for e in electors]
        try:
            first = await master_other_than(None, NODE_BOUND)
            assert first is not None
            links[first].slow = True  # its etcd round trips now exceed the store timeout
            slowed_at = clock.now()
            return await master_other_than(first, 3 * NODE_BOUND), clock.now() - slowed_at
        finally:
            stop.set()
            await asyncio.gather(*runs)

    loop = virtual_time_loop(clock)
    try:
        new_master, took = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert new_master is not None, f"no master for {took:.1f} s after the master's link slowed"
    assert took <= NODE_BOUND


def test_monitor_connections_send_without_nagle_delay():
    settings = load_settings({"host": "127.0.0.1", "port": free_port()}, env={})

    async def accepted_nodelay() -> int:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[int] = loop.create_future()

        class Accept(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                got.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Accept, sock=listen_socket(settings))
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", settings.port)
            try:
                return await asyncio.wait_for(got, 5)
            finally:
                writer.close()
                await writer.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0, "accepted sockets keep Nagle's algorithm on"
