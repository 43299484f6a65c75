"""The TCP monitor port without a fence: it listens only while the node is master."""

from __future__ import annotations

import asyncio
import socket

from app.clock import FakeClock
from app.probe.tcp_monitor import TcpMonitor
from app.role import Role, Snapshot, Transition
from tests.support.ports import free_port


class View:
    def __init__(self) -> None:
        self.snapshot = Snapshot(node_id="n1", backend="memory")

    def become(self, master: bool) -> None:
        self.snapshot = Snapshot(
            node_id="n1", backend="memory", holds_key=master, lease_valid_until=2000.0
        )


def _connects(port: int) -> bool:
    """Connect; then wait for the monitor's close (EOF), so that the monitor has taken
    the connection before the test's loop ends (a connection the loop never took leaks
    its transport into a later test)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            assert conn.recv(1) == b""
    except ConnectionRefusedError:
        return False
    return True


def test_the_port_is_open_only_between_the_transitions_to_and_from_master():
    async def scenario() -> None:
        view, port = View(), free_port()
        monitor = TcpMonitor(view, FakeClock(), "127.0.0.1", port, fenced=False)
        await monitor.start()
        try:
            assert not monitor.listening
            assert not await asyncio.to_thread(_connects, port)
            view.become(True)
            assert view.snapshot.role_at(1000.0) is Role.MASTER
            monitor.transition(Transition(0.0, Role.STANDBY, Role.MASTER, "t"), 1)
            for _ in range(100):
                if monitor.listening:
                    break
                await asyncio.sleep(0.01)
            assert await asyncio.to_thread(_connects, port)
            view.become(False)
            monitor.transition(Transition(0.0, Role.MASTER, Role.STANDBY, "t"), 1)
            for _ in range(100):
                if not monitor.listening:
                    break
                await asyncio.sleep(0.01)
            assert not await asyncio.to_thread(_connects, port)
        finally:
            await monitor.close()

    asyncio.run(scenario())


def test_with_a_fence_it_listens_always_and_the_kernel_decides():
    async def scenario() -> None:
        port = free_port()
        monitor = TcpMonitor(View(), FakeClock(), "127.0.0.1", port, fenced=True)
        await monitor.start()
        try:
            assert await asyncio.to_thread(_connects, port)
        finally:
            await monitor.close()

    asyncio.run(scenario())
