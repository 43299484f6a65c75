"""ProbeProtocol driven byte by byte through a fake transport: no sockets."""

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from app.http.protocol import MAX_HEADER_BYTES, ProbeProtocol

GET = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"


class FakeTransport(asyncio.Transport):
    """Records what is written; closing drops later writes and reports the loss, as asyncio does."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.written = bytearray()
        self.closed = False
        self.protocol: ProbeProtocol | None = None

    def write(self, data: Any) -> None:
        if not self.closed:
            self.written += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8700)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class CountingParser:
    """The protocol's parser, counting the bytes it is fed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fed = 0

    def feed_data(self, data: bytes) -> None:
        self.fed += len(data)
        self.inner.feed_data(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """200 with ``<path> <body length>`` once the whole request body is in."""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message["body"])
        if not message["more_body"]:
            break
    body = f"{scope['path']} {size}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Connection:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        config = uvicorn.Config(echo_app, http=ProbeProtocol, lifespan="off", log_config=None)
        self.protocol = ProbeProtocol(config, ServerState(), {}, _loop=loop)
        self.transport = FakeTransport(loop)
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)
        self.parser = CountingParser(self.protocol.parser)
        self.protocol.parser = self.parser

    def send(self, data: bytes, piece: int = 0) -> None:
        for i in range(0, len(data), piece or len(data) or 1):
            self.protocol.data_received(data[i : i + (piece or len(data))])

    @property
    def written(self) -> bytes:
        return bytes(self.transport.written)

    def statuses(self) -> list[bytes]:
        return re.findall(rb"HTTP/1\.1 (\d{3}) ", self.written)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def run(scenario: Callable[[Connection], Awaitable[None]]) -> None:
    async def main() -> None:
        await scenario(Connection(asyncio.get_running_loop()))

    asyncio.run(main())


def head_of_size(size: int) -> bytes:
    start = b"GET /x HTTP/1.1\r\nHost: x\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


# End of input (half-close).


def test_eof_with_nothing_sent_closes_at_once():
    async def scenario(c: Connection) -> None:
        assert c.protocol.eof_received() is False
        assert c.transport.closed

    run(scenario)


@pytest.mark.parametrize(
    "request_bytes",
    [GET, b"GET /x HTTP/1.0\r\n\r\n", b"GET /x\r\n"],
    ids=["http11", "http10", "one-line"],
)
def test_eof_after_a_request_answers_it_then_closes(request_bytes: bytes):
    async def scenario(c: Connection) -> None:
        c.send(request_bytes)
        assert c.protocol.eof_received() is True
        assert not c.transport.closed
        await settle()
        assert c.statuses() == [b"200"]
        assert c.written.endswith(b"\r\n\r\n/x 0")
        assert c.transport.closed

    run(scenario)


def test_eof_after_a_request_sent_in_pieces_answers_it():
    async def scenario(c: Connection) -> None:
        c.send(GET, piece=3)
        assert c.protocol.eof_received() is True
        await settle()
        assert c.statuses() == [b"200"]
        assert c.transport.closed

    run(scenario)


def test_eof_after_pipelined_requests_answers_each_in_order_then_closes():
    async def scenario(c: Connection) -> None:
        c.send(GET + GET.replace(b"/x", b"/y") + GET.replace(b"/x", b"/z"))
        assert c.protocol.eof_received() is True
        await settle()
        assert c.statuses() == [b"200"] * 3
        bodies = re.findall(rb"\r\n\r\n(/.) 0", c.written)
        assert bodies == [b"/x", b"/y", b"/z"]
        assert c.written.lower().count(b"connection: close") == 1
        assert c.transport.closed

    run(scenario)


def test_eof_after_the_answer_closes_at_once():
    async def scenario(c: Connection) -> None:
        c.send(GET)
        await settle()
        assert c.statuses() == [b"200"]
        assert not c.transport.closed  # kept alive
        assert c.protocol.eof_received() is False
        assert c.transport.closed

    run(scenario)


def test_eof_drops_a_partial_request_after_a_complete_one():
    async def scenario(c: Connection) -> None:
        c.send(GET + b"GET /y HTTP/1.1\r\nHo")
        assert c.protocol.eof_received() is True
        await settle()
        assert c.statuses() == [b"200"]
        assert c.transport.closed

    run(scenario)


@pytest.mark.parametrize(
    "partial", [b"GET /x HTT", b"GET /x HTTP/1.1\r\nHost: x\r\n"], ids=["line", "head"]
)
def test_eof_mid_head_closes_at_once(partial: bytes):
    async def scenario(c: Connection) -> None:
        c.send(partial)
        assert c.protocol.eof_received() is False
        assert c.transport.closed
        await settle()
        assert c.written == b""

    run(scenario)


def test_eof_with_the_body_still_missing_closes_at_once():
    async def scenario(c: Connection) -> None:
        c.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        await settle()
        assert c.protocol.eof_received() is False
        assert c.transport.closed
        await settle()
        assert c.written == b""

    run(scenario)


def test_keep_alive_serves_request_after_request():
    async def scenario(c: Connection) -> None:
        for n in range(1, 4):
            c.send(GET)
            await settle()
            assert c.statuses() == [b"200"] * n
        assert not c.transport.closed

    run(scenario)


# The header limit.


@pytest.mark.parametrize("piece", [0, 1000, 7], ids=["whole", "1000-byte-pieces", "7-byte-pieces"])
def test_a_head_at_the_limit_is_answered(piece: int):
    async def scenario(c: Connection) -> None:
        c.send(head_of_size(MAX_HEADER_BYTES), piece)
        await settle()
        assert c.statuses() == [b"200"]

    run(scenario)


@pytest.mark.parametrize("piece", [0, 1000, 7], ids=["whole", "1000-byte-pieces", "7-byte-pieces"])
def test_a_head_one_byte_over_gets_431_and_a_close(piece: int):
    async def scenario(c: Connection) -> None:
        c.send(head_of_size(MAX_HEADER_BYTES + 1), piece)
        assert c.statuses() == [b"431"]
        assert c.transport.closed
        assert c.parser.fed == MAX_HEADER_BYTES

    run(scenario)


def test_431_is_a_small_json_answer_that_closes():
    async def scenario(c: Connection) -> None:
        c.send(head_of_size(20 * 1024))
        head, body = c.written.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert b"connection: close" in head.split(b"\r\n")
        assert f"content-length: {len(body)}".encode() in head.split(b"\r\n")
        assert json.loads(body) == {
            "detail": f"request headers larger than {MAX_HEADER_BYTES} bytes"
        }

    run(scenario)


def test_an_endless_header_reaches_the_parser_only_up_to_the_limit():
    async def scenario(c: Connection) -> None:
        c.send(b"GET /x HTTP/1.1\r\nX-Big: ")
        for _ in range(100):
            c.send(b"a" * 65536)
            if c.transport.closed:
                break
        assert c.statuses() == [b"431"]
        assert c.parser.fed == MAX_HEADER_BYTES
        await settle()
        assert c.statuses() == [b"431"]  # the app never ran

    run(scenario)


def test_the_count_starts_again_for_each_kept_alive_request():
    async def scenario(c: Connection) -> None:
        for n in range(1, 4):
            c.send(head_of_size(MAX_HEADER_BYTES * 3 // 4), piece=1000)
            await settle()
            assert c.statuses() == [b"200"] * n

    run(scenario)


def test_the_count_starts_again_for_each_pipelined_request():
    async def scenario(c: Connection) -> None:
        c.send(head_of_size(MAX_HEADER_BYTES * 3 // 4) * 3)
        await settle()
        assert c.statuses() == [b"200"] * 3

    run(scenario)


def test_the_limit_holds_for_a_kept_alive_request_too():
    async def scenario(c: Connection) -> None:
        c.send(GET)
        await settle()
        c.send(head_of_size(MAX_HEADER_BYTES + 1), piece=1000)
        assert c.statuses() == [b"200", b"431"]
        assert c.transport.closed

    run(scenario)


POST = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + b"b" * 20000


@pytest.mark.parametrize("before", [GET, POST], ids=["after-a-get", "after-a-body"])
def test_a_pipelined_head_is_held_to_at_most_twice_the_limit(before: bytes):
    async def scenario(c: Connection) -> None:
        c.send(before + head_of_size(3 * MAX_HEADER_BYTES))
        assert b"431" in c.statuses()
        assert c.parser.fed <= len(before) + 2 * MAX_HEADER_BYTES
        assert c.transport.closed

    run(scenario)


def test_body_bytes_do_not_count():
    async def scenario(c: Connection) -> None:
        body = b"b" * (5 * MAX_HEADER_BYTES)
        c.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await settle()
        assert c.statuses() == [b"200"]
        assert c.written.endswith(b"/x %d" % len(body))

    run(scenario)


def test_an_invalid_request_is_logged_with_the_client_address(caplog: pytest.LogCaptureFixture):
    async def scenario(c: Connection) -> None:
        with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
            c.send(b"NOT HTTP AT ALL\x00\r\n\r\n")
        assert c.statuses() == [b"400"]

    run(scenario)
    [record] = [r for r in caplog.records if "Invalid HTTP request" in r.getMessage()]
    assert record.getMessage().endswith("(client 127.0.0.1:50000)")
    assert record.client == "127.0.0.1:50000"  # type: ignore[attr-defined]
