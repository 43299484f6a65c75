"""app.store.http1 against a real asyncio server on 127.0.0.1, started by each test.

The server reads each request (head and Content-Length body), records it with the
number of the connection it came on, and answers as the test says: bytes written as
they are, so a reply can be cut, stalled, malformed or split at odd places.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from app.store.http1 import ConnectionPool, TransportError
from tests.support.certs import CA, client_context
from tests.support.ports import free_port

HOST = "127.0.0.1"
WAIT = 5.0  # the most any test waits for the server to see something
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{}{"a": 1}\n'


@dataclass
class Seen:
    connection: int
    head: list[str]  # the request line, then the headers
    body: bytes


# What to do with a request: write to the writer, return False to close the connection.
Answer = Callable[[Seen, asyncio.StreamWriter], Awaitable[bool]]


def replies(*answers: bytes) -> Answer:
    """Answer the n-th request with ``answers[n]``, the last one from then on; a reply
    that says ``Connection: close`` closes the connection after it."""
    count = itertools.count()

    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        data = answers[min(next(count), len(answers) - 1)]
        writer.write(data)
        await writer.drain()
        return b"Connection: close" not in data

    return answer


class Server:
    """One asyncio server on a free loopback port; see the module docstring."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.port = free_port(HOST)
        self.connections = 0
        self.seen: list[Seen] = []
        self.ended: asyncio.Queue[int] = asyncio.Queue()  # connections whose loop ended
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, HOST, self.port, ssl=self.tls)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def wait_ended(self) -> int:
        """The number of the next connection whose loop ended (the client closed it)."""
        return await asyncio.wait_for(self.ended.get(), WAIT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.append(writer)
        try:
            for _ in range(100):
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[:-2]
                length = next(
                    (int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length")),
                    0,
                )
                seen = Seen(number, lines, await reader.readexactly(length))
                self.seen.append(seen)
                if not await self.answer(seen, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self.ended.put_nowait(number)


def run(answer: Answer, scenario: Callable[[Server, ConnectionPool], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        pool = ConnectionPool()
        async with Server(answer) as server:
            try:
                async with asyncio.timeout(2 * WAIT):  # a hang fails the test
                    return await scenario(server, pool)
            finally:
                await pool.aclose()

    return asyncio.run(main())


async def post(pool: ConnectionPool, server: Server, body: bytes = b"{}") -> tuple[int, bytes]:
    return await pool.request("POST", server.url + "/v3/kv/range", body, {})


# -- replies --------------------------------------------------------------------------------


def test_a_post_sends_its_headers_and_reads_a_content_length_reply() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        headers = {"Grpc-Metadata-Hasleader": "true", "Authorization": "tok.1"}
        got = await pool.request("POST", server.url + "/v3/kv/range", b'{"k":1}', headers)
        assert got == (200, b'{}{"a": 1}\n')
        assert await pool.request("GET", server.url + "/version", None, {}) == got
        post_seen, get_seen = server.seen
        assert post_seen.head == [
            "POST /v3/kv/range HTTP/1.1",
            f"Host: {HOST}:{server.port}",
            "Content-Type: application/json",
            "Content-Length: 7",
            "Grpc-Metadata-Hasleader: true",
            "Authorization: tok.1",
        ]
        assert post_seen.body == b'{"k":1}'
        assert get_seen.head == ["GET /version HTTP/1.1", f"Host: {HOST}:{server.port}"]

    run(replies(OK), scenario)


CHUNKED = (
    b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


def test_a_chunked_reply_is_read_to_its_last_chunk_and_the_connection_kept() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        assert await post(pool, server) == (404, b"hello world")
        assert await post(pool, server) == (404, b"hello world")
        assert [s.connection for s in server.seen] == [1, 1]

    run(replies(CHUNKED), scenario)


def test_a_body_without_length_ends_with_the_connection_which_is_not_kept() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        assert await post(pool, server) == (200, b"until the end")
        assert pool.idle_connections() == 0

    run(_then_close(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", OK), scenario)


# -- keep-alive -------------------------------------------------------------------------------


def test_requests_one_after_another_share_one_connection() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        for _ in range(20):
            assert (await post(pool, server))[0] == 200
        assert server.connections == 1 and len(server.seen) == 20
        assert pool.idle_connections() == 1

    run(replies(OK), scenario)


def test_concurrent_requests_open_connections_and_at_most_max_idle_stay() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        replies = await asyncio.gather(*(post(pool, server) for _ in range(6)))
        assert [status for status, _ in replies] == [200] * 6
        assert server.connections == 6 and pool.idle_connections() == 4
        closed = {await server.wait_ended(), await server.wait_ended()}  # the other two
        assert len(closed) == 2 and pool.idle_connections() == 4

    run(replies(OK), scenario)


def test_connection_close_from_the_server_makes_the_next_request_connect_again() -> None:
    closing = OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)

    async def scenario(server: Server, pool: ConnectionPool) -> None:
        assert await post(pool, server) == (200, b'{}{"a": 1}\n')
        assert pool.idle_connections() == 0
        assert await post(pool, server) == (200, b'{}{"a": 1}\n')
        assert [s.connection for s in server.seen] == [1, 2]

    run(replies(closing, OK), scenario)


def test_an_idle_connection_the_server_closes_is_dropped_and_the_next_request_succeeds() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        await post(pool, server)  # the server closes after answering, saying nothing
        assert await server.wait_ended() == 1
        for _ in range(500):  # the loop sees the EOF within a few turns
            if pool.idle_connections() == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.idle_connections() == 0
        assert await post(pool, server) == (200, b'{}{"a": 1}\n')
        assert [s.connection for s in server.seen] == [1, 2]

    run(_then_close(OK, OK), scenario)


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "words"),
    [
        (OK[:-5], "in the middle of the reply"),
        (OK[:20], "before a reply"),
        (None, "before a reply"),
        (b"NOT HTTP AT ALL\r\n\r\n", "not valid HTTP/1.1"),
    ],
    ids=["cut-in-body", "cut-in-head", "closed", "malformed"],
)
def test_a_broken_reply_is_a_transport_error_and_its_connection_is_not_reused(
    first: bytes | None, words: str
) -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        with pytest.raises(TransportError, match=words):
            await post(pool, server)
        assert pool.idle_connections() == 0
        assert await post(pool, server) == (200, b'{}{"a": 1}\n')
        assert [s.connection for s in server.seen] == [1, 2]

    run(_then_close(first, OK), scenario)


def _then_close(first: bytes | None, then: bytes) -> Answer:
    """Write ``first`` (if any) and close on connection 1; answer ``then`` on every other."""

    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        data = first if seen.connection == 1 else then
        writer.write(data or b"")
        await writer.drain()
        return seen.connection != 1

    return answer


def test_a_request_timed_out_mid_reply_closes_its_connection() -> None:
    partial = asyncio.Event()

    async def stall_first(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK[:-5] if seen.connection == 1 else OK)
        await writer.drain()
        partial.set()
        return True  # and wait for a next request that never comes, or the client's close

    async def scenario(server: Server, pool: ConnectionPool) -> None:
        task = asyncio.create_task(post(pool, server))
        await asyncio.wait_for(partial.wait(), WAIT)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await task
        assert await server.wait_ended() == 1  # the client closed it
        assert pool.idle_connections() == 0
        assert await post(pool, server) == (200, b'{}{"a": 1}\n')
        assert [s.connection for s in server.seen] == [1, 2]

    run(stall_first, scenario)


def test_a_closed_port_is_a_transport_error_caused_by_the_refusal() -> None:
    async def main() -> None:
        pool = ConnectionPool()
        with pytest.raises(TransportError, match="cannot connect") as caught:
            await pool.request("GET", f"http://{HOST}:{free_port(HOST)}/version", None, {})
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
        await pool.aclose()

    asyncio.run(main())


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        with pytest.raises(ValueError, match="line break"):
            await pool.request("GET", server.url + "/", None, {"Authorization": "a\r\nX: y"})
        assert server.connections == 0

    run(replies(OK), scenario)


def test_aclose_closes_the_idle_connections() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        await post(pool, server)
        await pool.aclose()
        assert await server.wait_ended() == 1
        assert pool.idle_connections() == 0

    run(replies(OK), scenario)


# -- streams ----------------------------------------------------------------------------------


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_a_stream_gives_lines_split_across_chunks_and_writes_at_odd_places() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = head + _chunked(b'{"a":', b'1}\n{"b"', b':2}\n\n{"c":3}')

    async def in_pieces(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        for start in range(0, len(data), 7):
            writer.write(data[start : start + 7])
            await writer.drain()
            await asyncio.sleep(0)
        return True

    async def scenario(server: Server, pool: ConnectionPool) -> None:
        async with pool.stream("POST", server.url + "/v3/watch", b"{}", {}) as reply:
            assert reply.status == 200
            lines = [line async for line in reply.lines()]
        assert lines == [b'{"a":1}', b'{"b":2}', b"", b'{"c":3}']
        assert await server.wait_ended() == 1  # a stream's connection is never kept
        assert pool.idle_connections() == 0

    run(in_pieces, scenario)


def test_leaving_a_stream_early_closes_its_connection() -> None:
    async def first_line_then_quiet(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        line = b'{"result":{"created":true}}\n'
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(line), line))
        await writer.drain()
        return True

    async def scenario(server: Server, pool: ConnectionPool) -> None:
        async with pool.stream("POST", server.url + "/v3/watch", b"{}", {}) as reply:
            async for line in reply.lines():
                assert line == b'{"result":{"created":true}}'
                break
        assert await server.wait_ended() == 1
        assert pool.idle_connections() == 0

    run(first_line_then_quiet, scenario)


def test_a_stream_with_an_error_status_gives_its_body_whole() -> None:
    async def scenario(server: Server, pool: ConnectionPool) -> None:
        async with pool.stream("POST", server.url + "/v3/watch", b"{}", {}) as reply:
            assert (reply.status, await reply.read()) == (404, b"hello world")

    run(replies(CHUNKED), scenario)


# -- TLS --------------------------------------------------------------------------------------


def _server_context(ca: CA) -> ssl.SSLContext:
    issued = ca.issue("server", hosts=(HOST,))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    return context


def test_tls_requests_share_one_verified_connection(tmp_path: Path) -> None:
    ca = CA(tmp_path / "ca")

    async def main() -> None:
        pool = ConnectionPool(client_context(ca))
        async with Server(replies(OK), tls=_server_context(ca)) as server:
            try:
                for _ in range(3):
                    assert await post(pool, server) == (200, b'{}{"a": 1}\n')
            finally:
                await pool.aclose()
        assert server.connections == 1

    asyncio.run(main())


def test_a_server_certificate_from_another_ca_fails_verification(tmp_path: Path) -> None:
    ca, other = CA(tmp_path / "ca"), CA(tmp_path / "other", "other-ca")

    async def main() -> None:
        pool = ConnectionPool(client_context(other))
        async with Server(replies(OK), tls=_server_context(ca)) as server:
            with pytest.raises(TransportError) as caught:
                await post(pool, server)
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        assert "certificate verify failed" in str(caught.value)
        await pool.aclose()

    asyncio.run(main())
