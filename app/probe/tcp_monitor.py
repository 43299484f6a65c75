"""The TCP monitor port: a connection succeeds only on the master.

For load balancers that can only connect (AWS NLB and Google TCP checks, Azure TCP
probes, keepalived's ``TCP_CHECK``, HAProxy ``tcp-check``). Each connection is
accepted and closed at once; what counts is whether the connect succeeds.

* **With a fence** (``--fence-port``), the port is one of the fenced ports: it
  listens always, and the kernel refuses it, with a TCP reset, on every node that
  does not hold the lease, on the kernel's own clock.
* **Without one**, the listening socket is open only while the node is master: it
  is opened on the transition to MASTER and closed on every transition away (the
  approach of stolon's proxy). Between the instant the role decays and the
  transition that closes it, a connect may still succeed, so with this form a load
  balancer may see a node positive for up to the loop's reaction time longer than
  ``/monitor`` does; the fence has no such gap.

Transitions reach it from the election thread through :meth:`TcpMonitor.transition`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from app.clock import Clock
from app.role import NodeView, Role, Transition

log = logging.getLogger("vipmon.tcp_monitor")

_RECHECK = 1.0  # s: the role is read again at least this often


class TcpMonitor:
    """Listens on ``port``: always when ``fenced``, else only while the node is master."""

    def __init__(self, view: NodeView, clock: Clock, host: str, port: int, fenced: bool) -> None:
        self.view, self.clock = view, clock
        self.host, self.port, self.fenced = host, port, fenced
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen now (fenced), or start following the role. Raises OSError for the port."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.fenced:
            await self._open()
            return
        await self._follow_once()
        self._task = asyncio.create_task(self._follow(), name="tcp-monitor")

    def transition(self, t: Transition, term: int) -> None:
        """Thread-safe: the role changed; look again."""
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._wake.set)

    def renew_latency(self, seconds: float) -> None:
        pass

    def store_error(self, kind: str) -> None:
        pass

    async def _follow(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _RECHECK)
            self._wake.clear()
            try:
                await self._follow_once()
            except OSError as exc:
                log.warning("tcp monitor port %d: cannot listen: %s", self.port, exc)

    async def _follow_once(self) -> None:
        master = self.view.snapshot.role_at(self.clock.now()) is Role.MASTER
        if master and self._server is None:
            await self._open()
        elif not master and self._server is not None:
            await self._shut()

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            _CloseAtOnce, self.host, self.port, reuse_address=True
        )

    async def _shut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._shut()


class _CloseAtOnce(asyncio.Protocol):
    """Closes each accepted connection in the accept callback itself: no task that a
    closing loop could cancel before it ran, leaving the connection open."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()
