"""A fault-injecting TCP proxy for a node's etcd traffic, on 127.0.0.1 only.

One :class:`FaultProxy` stands between one node and one etcd member, so a node
can be cut off from one member and not the others. Each proxy has a mode:

* ``open``: bytes flow, each direction held back by half of ``delay`` (so a
  round trip gains ``delay``), in order;
* ``blackhole``: new connections are accepted and nothing is forwarded; bytes
  already in flight and bytes that keep arriving wait, and flow once the proxy
  is open again, even if the sender has given up meanwhile (as TCP would
  retransmit them): a request the node timed out on may still reach etcd late;
* ``reset``: every connection is closed with a RST, new ones at once.

All proxies of a :class:`ProxyHub` run on one asyncio loop in one daemon
thread; the control methods are thread-safe and return once the change is in
effect. Only the listening sockets and connections the hub made are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

HOST = "127.0.0.1"
CHUNK = 65536
OPEN, BLACKHOLE, RESET = "open", "blackhole", "reset"
_EOF = b""


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; see the module docstring."""

    def __init__(self, name: str, upstream: tuple[str, int]) -> None:
        self.name = name
        self.upstream = upstream
        self.port = 0
        self.mode = OPEN
        self.delay = 0.0
        self.last_activity = 0.0  # monotonic time of the last byte from the node
        self._opened = asyncio.Event()
        self._opened.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- on the hub's loop -------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accepted, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Track the connection at once, so that closing aborts it even if its task
        has not started yet; then handle it in a task."""
        self._writers.add(writer)
        task = asyncio.get_running_loop().create_task(self._accept(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            abort(writer)
        self._writers.clear()

    def _set(self, mode: str, delay: float) -> None:
        self.mode, self.delay = mode, delay
        if mode == OPEN:
            self._opened.set()
        else:
            self._opened.clear()
        if mode == RESET:
            for writer in list(self._writers):
                abort(writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.mode == RESET:
                abort(writer)
                return
            await self._opened.wait()
            if self.mode == RESET or writer.is_closing():
                abort(writer)
                return
            await self._relay(reader, writer, self._opened)
        finally:
            self._writers.discard(writer)
            if not writer.is_closing():
                abort(writer)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        first: bytes = b"",
        connected: Callable[[asyncio.StreamWriter], object] | None = None,
    ) -> None:
        """Connect upstream, then pipe both ways through ``gate`` until either side ends.

        ``first``: bytes already read from the node, sent first; ``connected``
        is called with the upstream writer once connected.
        """
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            abort(writer)  # the member is down: the node sees a refused connection
            return
        self._writers.add(up_writer)
        try:
            if connected is not None:
                connected(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer, gate, from_node=True, first=first),
                self._pipe(up_reader, writer, gate, from_node=False),
            )
        finally:
            self._writers.discard(up_writer)
            abort(up_writer)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        *,
        from_node: bool,
        first: bytes = b"",
    ) -> None:
        """Read into a queue of (due time, bytes); a second task writes each when due
        and ``gate`` is set. ``first``: bytes already read from ``reader``, sent first."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        if first:
            queue.put_nowait((loop.time() + self.delay / 2, first))
        sender = asyncio.create_task(self._send(queue, writer, gate))
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = _EOF
                if from_node:
                    self.last_activity = time.monotonic()
                queue.put_nowait((loop.time() + self.delay / 2, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    @staticmethod
    async def _send(
        queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, gate: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await gate.wait()
            if not data or writer.is_closing():
                if writer.can_write_eof() and not writer.is_closing():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return


P = TypeVar("P", bound=FaultProxy)


class ProxyHub:
    """Owns the proxies' event loop thread; create proxies, change modes, close all."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy")
        self._thread.daemon = True
        self._thread.start()
        self.proxies: list[FaultProxy] = []

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def add(self, name: str, upstream_port: int) -> FaultProxy:
        """A new proxy to ``127.0.0.1:upstream_port``, listening on a free port."""
        return self.adopt(lambda: FaultProxy(name, (HOST, upstream_port)))

    def adopt(self, make: Callable[[], P]) -> P:
        """Build a proxy with ``make`` on the hub's loop (its Events bind to it), make it
        listen on a free port, and own it (:meth:`close` closes it)."""

        async def start() -> P:
            proxy = make()
            await proxy._listen()
            return proxy

        proxy: P = self._run(start())
        self.proxies.append(proxy)
        return proxy

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the hub's loop; return once it has run."""

        async def run() -> None:
            fn()

        self._run(run())

    def set(self, proxies: list[FaultProxy], mode: str = OPEN, delay: float = 0.0) -> None:
        """Put ``proxies`` in ``mode`` (with ``delay`` s added per round trip when open)."""
        if mode not in (OPEN, BLACKHOLE, RESET):
            raise ValueError(f"unknown mode {mode!r}")

        async def apply() -> None:
            for proxy in proxies:
                proxy._set(mode, delay)

        self._run(apply())

    def heal(self, proxies: list[FaultProxy] | None = None) -> None:
        self.set(self.proxies if proxies is None else proxies, OPEN, 0.0)

    def close(self) -> None:
        """Close every listener and connection, stop the loop and join its thread."""
        if self._loop.is_closed():
            return

        async def close_all() -> None:
            for proxy in self.proxies:
                await proxy._close()

        with contextlib.suppress(Exception):
            self._run(close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._cancel_leftovers()
            self._loop.close()

    def _cancel_leftovers(self) -> None:
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def __enter__(self) -> ProxyHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
