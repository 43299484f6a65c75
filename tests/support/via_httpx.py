"""An :class:`app.store.http1.Transport` on top of an httpx transport, for the wire tests.

``EtcdStore(..., transport=ViaHttpx(httpx.MockTransport(handler)))`` lets a test
answer the etcd client's requests with an httpx handler. What the handler raises as
a transport failure (``httpx.TransportError``, or an ``OSError`` such as
``ssl.SSLError``) comes out as :class:`app.store.http1.TransportError` chained to it,
as the connection pool raises its own; a stream's body is closed when its block is left.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping

import httpx

from app.store.http1 import StreamedReply, TransportError


@contextlib.contextmanager
def _as_transport_errors() -> Iterator[None]:
    try:
        yield
    except (httpx.TransportError, OSError) as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}") from exc


class _Streamed:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._iterators: list[AsyncGenerator[bytes, None]] = []

    @property
    def status(self) -> int:
        return self._response.status_code

    async def read(self) -> bytes:
        with _as_transport_errors():
            return await self._response.aread()

    def lines(self) -> AsyncIterator[bytes]:
        self._iterators.append(self._lines())
        return self._iterators[-1]

    async def _lines(self) -> AsyncGenerator[bytes, None]:
        with _as_transport_errors():
            async for line in self._response.aiter_lines():
                yield line.encode()

    async def aclose(self) -> None:
        for iterator in self._iterators:
            await iterator.aclose()
        await self._response.aclose()


class ViaHttpx:
    """Sends each request to ``transport`` (an ``httpx.MockTransport``, say)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def _send(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> httpx.Response:
        request = httpx.Request(method, url, content=body, headers=dict(headers))
        with _as_transport_errors():
            return await self._transport.handle_async_request(request)

    async def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        response = await self._send(method, url, body, headers)
        try:
            with _as_transport_errors():
                return response.status_code, await response.aread()
        finally:
            await response.aclose()

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> AsyncIterator[StreamedReply]:
        streamed = _Streamed(await self._send(method, url, body, headers))
        try:
            yield streamed
        finally:
            await streamed.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()
