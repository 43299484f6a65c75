"""A small HTTP/1.1 client for etcd's JSON gateway, on persistent connections.

A node sends a few requests a second to etcd for as long as it runs, so the
cost of each one is most of an idle node's CPU. :class:`ConnectionPool` does
only what the gateway needs: a JSON POST or a GET, over plain TCP or TLS,
the reply parsed by ``httptools`` (Content-Length and chunked bodies), on
connections kept open between requests.

Contract:

* **Calls.** :meth:`ConnectionPool.request` returns ``(status, body)`` once
  the whole reply is read. :meth:`ConnectionPool.stream` is an async context
  manager giving the status as soon as the headers are read, then the body's
  lines (for a watch); its connection is closed when the block is left.
  Any HTTP status is a return value, not an exception.
* **Reuse.** A connection goes back to the idle pool of its origin (scheme,
  host, port) only when its reply was read to the end, the server did not
  say ``Connection: close`` and it has not closed the connection; at most
  ``max_idle`` connections per origin stay idle. A connection the server
  closes while idle is dropped before it could be used again.
* **Cancellation.** A call cancelled at any point (by ``asyncio.timeout``
  around it) closes its connection: a connection with part of a reply
  unread is never used again. The pool has no timeouts of its own.
* **Failures.** Anything below HTTP (connect refused, a reset, EOF in the
  middle of a reply, a TLS failure, a reply that is not HTTP) raises
  :class:`TransportError`, chained with ``from`` to the ``OSError`` or
  ``ssl.SSLError`` behind it. A failed request is never sent again: retrying
  (elsewhere) is the caller's choice.
* **Not here:** proxies, redirects, cookies, compression, pipelining.

:class:`Transport` is the interface the etcd client needs; tests give it
another implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import httptools


class TransportError(Exception):
    """The request got no complete HTTP reply; ``__cause__`` says why, when it can."""


class StreamedReply(Protocol):
    """A reply whose body is still arriving."""

    @property
    def status(self) -> int: ...

    async def read(self) -> bytes:
        """The rest of the body, to its end."""

    def lines(self) -> AsyncIterator[bytes]:
        """The rest of the body, line by line, without the ``\\n``."""


class Transport(Protocol):
    """What :class:`app.store.etcd_client.EtcdClient` sends its requests through."""

    async def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; return the status and the whole body."""

    def stream(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> AbstractAsyncContextManager[StreamedReply]:
        """Send one request; give the reply once its headers are in."""

    async def aclose(self) -> None:
        """Close every connection."""


@dataclass(frozen=True)
class Origin:
    """Where a URL's requests go: ``scheme://host:port``."""

    tls: bool
    host: str
    port: int
    #: The ``Host`` header: the URL's own spelling of host and port.
    authority: str


def parse_origin(url: str) -> Origin:
    """The origin of an ``http://`` or ``https://`` URL. Raises ValueError for anything else."""
    split = urllib.parse.urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ValueError("not an http(s) URL with a host")
    port = split.port  # ValueError when it is no port number
    tls = split.scheme == "https"
    default = 443 if tls else 80
    return Origin(tls, split.hostname, port or default, split.netloc.rpartition("@")[2])


def _request_head(
    method: str, path: str, origin: Origin, body: bytes | None, headers: Mapping[str, str]
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {origin.authority}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the reply in flight on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False  # EOF or closed: never used for another request
        self.failure: TransportError | None = None
        self.status = 0
        self.headers_done = self.complete = self.keep_alive = False
        self._parser: httptools.HttpResponseParser | None = None
        self._framed = False  # Content-Length or chunked: EOF before the end is a failure
        self._body: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None

    @property
    def open(self) -> bool:
        """Neither end has closed it (yet)."""
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    @property
    def reusable(self) -> bool:
        """The reply was read to its end and the connection may carry another request."""
        return self.complete and self.keep_alive and self.open

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.status, self.headers_done, self.complete, self.keep_alive = 0, False, False, False
        self._framed = False
        self._body = []
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(data)

    def take_body(self) -> bytes:
        body, self._body = b"".join(self._body), []
        return body

    async def next_event(self) -> None:
        """Wait until the server sends something, or the reply fails (TransportError)."""
        if self.failure is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.failure is not None and not self.complete:
            raise self.failure

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, whatever is unread or unsent."""
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # nothing asked: this connection is out of step
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.abort()
            self._fail("the reply is not valid HTTP/1.1", exc)

    def eof_received(self) -> bool:
        if self._parser is not None and self.headers_done and not self._framed:
            self._finish(keep_alive=False)  # a body that ends with the connection
        self._closed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(exc)

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second reply to one request
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.status = self._parser.get_status_code()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        assert self._parser is not None
        self._finish(keep_alive=self._parser.should_keep_alive())

    # -- private ---------------------------------------------------------------------------

    def _finish(self, *, keep_alive: bool) -> None:
        self.keep_alive, self.complete, self._parser = keep_alive, True, None
        self._wake()

    def _closed(self, exc: Exception | None) -> None:
        self.lost = True
        if self._parser is not None:
            where = "in the middle of the reply" if self.headers_done else "before a reply"
            self._fail(f"the connection ended {where}", exc)

    def _fail(self, reason: str, cause: BaseException | None) -> None:
        if self.failure is None and not self.complete:
            detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            self.failure = TransportError(reason + detail)
            self.failure.__cause__ = cause
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Streamed:
    """The :class:`StreamedReply` of a :class:`_Connection`."""

    def __init__(self, connection: _Connection) -> None:
        self._conn = connection
        self._pending = bytearray()

    @property
    def status(self) -> int:
        return self._conn.status

    async def read(self) -> bytes:
        while not self._conn.complete:
            await self._conn.next_event()
        return bytes(self._pending) + self._conn.take_body()

    def lines(self) -> AsyncIterator[bytes]:
        return self

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while True:  # each turn takes what the server sent; the caller's timeout bounds it
            self._pending += self._conn.take_body()
            end = self._pending.find(b"\n")
            if end >= 0:
                line = bytes(self._pending[:end])
                del self._pending[: end + 1]
                return line
            if self._conn.complete:
                if not self._pending:
                    raise StopAsyncIteration
                self._pending += b"\n"  # the last line had none
                continue
            await self._conn.next_event()


class ConnectionPool:
    """Persistent HTTP/1.1 connections, per origin; see the module docstring.

    ``ssl_context`` is used for ``https://`` URLs (the default context if
    None), with the URL's host as the server name. Use it from one event
    loop at a time.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *, max_idle: int = 4) -> None:
        self._ssl = ssl_context
        self._max_idle = max_idle
        self._origins: dict[str, Origin] = {}
        self._idle: dict[str, list[_Connection]] = {}
        self._busy: set[_Connection] = set()

    async def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Send one request and read the whole reply. Raises :class:`TransportError`."""
        key, connection = await self._send(method, url, body, headers)
        try:
            while not connection.complete:
                await connection.next_event()
        except BaseException:
            self._drop(connection)
            raise
        self._busy.discard(connection)
        status, content = connection.status, connection.take_body()
        idle = self._idle.setdefault(key, [])
        if connection.reusable and len(idle) < self._max_idle:
            idle.append(connection)
        else:
            connection.close()
        return status, content

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> AsyncIterator[StreamedReply]:
        """Send one request; give the reply once its headers are in.

        The connection is closed when the block is left. Raises :class:`TransportError`.
        """
        _, connection = await self._send(method, url, body, headers)
        try:
            while not connection.headers_done:
                await connection.next_event()
            yield _Streamed(connection)
        finally:
            self._drop(connection)

    def idle_connections(self) -> int:
        """How many open connections wait in the pool now, every origin together."""
        return sum(c.open for idle in self._idle.values() for c in idle)

    async def aclose(self) -> None:
        """Close every connection, idle or in use. The pool can be used again after."""
        for connection in self._busy:
            connection.abort()
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._busy.clear()
        self._idle.clear()

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[str, _Connection]:
        key, path = _split(url)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = parse_origin(key)
        data = _request_head(method, path, origin, body, headers) + (body or b"")
        connection = self._reuse(key) or await self._connect(origin)
        self._busy.add(connection)
        connection.send(data)
        return key, connection

    def _reuse(self, key: str) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:  # shrinks every turn
            connection = idle.pop()
            if connection.open:
                return connection
            connection.abort()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        if origin.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        context = self._ssl if origin.tls else None
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection,
                origin.host,
                origin.port,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
        except OSError as exc:  # ssl.SSLError and socket.gaierror are OSErrors too
            raise TransportError(f"cannot connect to {origin.authority}: {exc}") from exc
        return connection

    def _drop(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        connection.abort()


def _split(url: str) -> tuple[str, str]:
    """``("scheme://host:port", "/path")`` of a URL."""
    start = url.find("/", url.find("://") + 3)
    return (url, "/") if start < 0 else (url[:start], url[start:])
