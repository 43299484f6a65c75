"""The peer proxy against a local asyncio echo server: header peek, pair decision, cuts."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.faultproxy import BLACKHOLE, RESET, ProxyHub
from tests.support.peerproxy import PeerNet, blocked, parse_head

IDS = {"m0": "3a9cca8198636eb9", "m1": "9e7c9af032928fe8", "m2": "676bf779d5480434"}


def test_the_head_is_parsed_into_a_request_line_and_lower_case_headers():
    line, headers = parse_head(
        b"GET /raft/stream/msgapp/9e7c HTTP/1.1\r\nHost: x\r\nX-Server-From: 9E7C\r\n"
        b"X-Raft-To:3a9c\r\nbroken line\r\n\r\nbody"
    )
    assert line == "GET /raft/stream/msgapp/9e7c HTTP/1.1"
    assert headers == {"host": "x", "x-server-from": "9E7C", "x-raft-to": "3a9c"}


@pytest.mark.parametrize(
    ("frm", "to", "cut"),
    [
        ("m0", "m1", True),  # out of the isolated member
        ("m1", "m0", True),  # into it
        ("m1", "m2", False),  # between the other two
        (None, "m0", True),  # a headerless request (POST /leases) to the isolated member
        (None, "m1", False),
        ("m0", None, True),
        (None, None, False),
    ],
)
def test_the_pair_decision(frm, to, cut):
    assert blocked(frm, to, {"m0"}) is cut
    assert blocked(frm, to, set()) is False


@pytest.fixture
def echo_port() -> Iterator[int]:
    """An asyncio echo server on its own loop thread; it closes its connections at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    writers: set[asyncio.StreamWriter] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            for _ in range(1000):
                data = await reader.read(4096)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(echo, "127.0.0.1", 0)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:

        async def stop() -> None:
            server.close()
            for writer in writers:
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def net(echo_port: int) -> Iterator[PeerNet]:
    with ProxyHub() as hub:
        peers = PeerNet(hub)
        for name in IDS:
            peers.add(name, echo_port)
        peers.learn(IDS)
        yield peers


def head(frm: str | None, to: str | None, path: str = "/raft/stream/message/x") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"X-Server-From: {IDS[frm]}"] if frm else []
    lines += [f"X-Raft-To: {IDS[to]}"] if to else []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def dial(net: PeerNet, frm: str | None, to: str) -> socket.socket:
    """A connection from ``frm`` to ``to``'s proxy whose head has come back (echoed)."""
    sock = socket.create_connection(("127.0.0.1", net.proxies[to].port), timeout=2)
    sock.sendall(head(frm, to if frm else None))
    assert recv_all(sock, len(head(frm, to if frm else None))).startswith(b"GET ")
    return sock


def recv_all(sock: socket.socket, n: int, timeout: float = 2.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    for _ in range(100):
        if len(data) >= n:
            break
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_the_pair_is_read_from_the_head_and_logged(net: PeerNet):
    with dial(net, "m1", "m0"), dial(net, None, "m2"):
        pass
    seen = list(net.seen)
    assert (IDS["m1"], IDS["m0"], "GET /raft/stream/message/x HTTP/1.1") in seen
    assert (None, None, "GET /raft/stream/message/x HTTP/1.1") in seen


def test_ids_learned_after_a_connection_opened_still_decide_for_it(echo_port: int):
    with ProxyHub() as hub:
        peers = PeerNet(hub)
        for name in IDS:
            peers.add(name, echo_port)
        with dial(peers, "m1", "m0") as early:  # the ids are not known yet
            peers.learn(IDS)
            peers.isolate(["m1"])
            early.sendall(b"held")
            with pytest.raises(TimeoutError):
                recv_all(early, 4, timeout=0.3)
            peers.heal()
            assert recv_all(early, 4) == b"held"


def test_blackhole_holds_open_and_new_connections_across_the_cut(net: PeerNet):
    into, out, aside = dial(net, "m1", "m0"), dial(net, "m0", "m2"), dial(net, "m1", "m2")
    with into, out, aside:
        net.isolate(["m0"], BLACKHOLE)
        late = socket.create_connection(("127.0.0.1", net.proxies["m0"].port), timeout=2)
        with late:
            late.sendall(head("m2", "m0"))
            aside.sendall(b"ping")
            assert recv_all(aside, 4) == b"ping"  # the other two still talk
            for sock in (into, out):
                sock.sendall(b"held")
                with pytest.raises(TimeoutError):
                    recv_all(sock, 4, timeout=0.3)
            with pytest.raises(TimeoutError):
                recv_all(late, 1, timeout=0.3)
            net.heal()
            for sock in (into, out):
                assert recv_all(sock, 4) == b"held"
            assert recv_all(late, len(head("m2", "m0"))) == head("m2", "m0")


def closed(sock: socket.socket) -> bool:
    """True if the peer closed the connection (RST or FIN) within 2 s, False if it echoes."""
    sock.settimeout(2)
    try:
        sock.sendall(b"x")
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def test_reset_closes_open_and_new_connections_across_the_cut(net: PeerNet):
    into, aside = dial(net, "m2", "m0"), dial(net, "m2", "m1")
    with into, aside:
        net.isolate(["m0"], RESET)
        assert closed(into)
        assert not closed(aside)  # the other two still talk
        leases = socket.create_connection(("127.0.0.1", net.proxies["m0"].port), timeout=2)
        with leases:
            leases.sendall(head(None, None, "/leases"))  # no ids: judged by where it goes
            assert closed(leases)
        with socket.create_connection(("127.0.0.1", net.proxies["m1"].port), timeout=2) as ok:
            ok.sendall(head(None, None, "/leases"))
            assert recv_all(ok, 4) == b"GET "
    net.heal()
    with dial(net, "m2", "m0") as again:
        assert not closed(again)
