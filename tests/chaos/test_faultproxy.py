"""The fault proxy against a loopback echo server: open, delay, blackhole, reset."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.faultproxy import BLACKHOLE, OPEN, RESET, FaultProxy, ProxyHub
from tests.support.ports import free_port


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        for _ in range(1000):
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def hub() -> Iterator[ProxyHub]:
    with ProxyHub() as h:
        yield h


def connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def roundtrip(sock: socket.socket, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(payload)
    return sock.recv(4096)


def refused_roundtrips(proxy: FaultProxy) -> None:
    """Connect and send twice: the RST shows up at the connect or at a later send."""
    with connect(proxy) as sock:
        roundtrip(sock)
        roundtrip(sock)


def test_open_forwards_both_ways(hub: ProxyHub, echo_port: int):
    proxy = hub.add("n1->m0", echo_port)
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"
    assert proxy.last_activity > 0


def test_delay_is_added_to_each_round_trip(hub: ProxyHub, echo_port: int):
    proxy = hub.add("n1->m0", echo_port)
    hub.set([proxy], OPEN, delay=0.3)
    with connect(proxy) as sock:
        t0 = time.monotonic()
        assert roundtrip(sock) == b"ping"
        assert time.monotonic() - t0 >= 0.3


def test_blackhole_stalls_then_delivers_after_heal(hub: ProxyHub, echo_port: int):
    proxy = hub.add("n1->m0", echo_port)
    with connect(proxy) as old:
        assert roundtrip(old) == b"ping"
        hub.set([proxy], BLACKHOLE)
        with connect(proxy) as new:  # accepted, but nothing comes back
            for sock in (old, new):
                with pytest.raises(TimeoutError):
                    roundtrip(sock, b"late", timeout=0.3)
            hub.heal([proxy])
            for sock in (old, new):
                sock.settimeout(2)
                assert sock.recv(4096) == b"late"


def test_reset_closes_connections_with_a_rst(hub: ProxyHub, echo_port: int):
    proxy = hub.add("n1->m0", echo_port)
    with connect(proxy) as old:
        assert roundtrip(old) == b"ping"
        hub.set([proxy], RESET)
        with pytest.raises(ConnectionResetError):
            roundtrip(old)
    with pytest.raises(ConnectionError):
        refused_roundtrips(proxy)
    hub.heal([proxy])
    with connect(proxy) as sock:
        assert roundtrip(sock) == b"ping"


def test_a_member_that_is_down_looks_refused(hub: ProxyHub):
    proxy = hub.add("n1->m0", free_port())  # nothing listens there
    with pytest.raises(ConnectionError):
        refused_roundtrips(proxy)


def test_only_the_chosen_proxy_is_cut(hub: ProxyHub, echo_port: int):
    a, b = hub.add("n1->m0", echo_port), hub.add("n1->m1", echo_port)
    hub.set([a], BLACKHOLE)
    with connect(b) as sock:
        assert roundtrip(sock) == b"ping"
    with connect(a) as sock, pytest.raises(TimeoutError):
        roundtrip(sock, timeout=0.2)
