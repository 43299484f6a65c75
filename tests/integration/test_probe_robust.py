"""Bad clients against a running node: half-closes, huge headers, idle sockets.

Raw sockets on 127.0.0.1. Every loop is bounded in count and in time; no test
asserts a duration: a probe that does not answer shows up as a status of 0.
"""

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.http.protocol import MAX_HEADER_BYTES
from tests.support.nodes import Cluster, Node, solo_master

ANSWER = b"\r\n\r\nROLE=MASTER node=solo term="


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with solo_master(tmp_path_factory.mktemp("robust")) as solo:
        yield solo


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything until the server closes; a reset ends the read too."""
    chunks = []
    for _ in range(1000):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def half_closed_exchange(port: int, request: bytes) -> bytes:
    with connect(port) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return read_to_eof(sock)


def monitor(port: int) -> int:
    """The status of one GET /monitor on a new connection; 0 if it got no answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /monitor HTTP/1.0\r\n\r\n")
            response = read_to_eof(sock)
    except OSError:
        return 0
    return status(response)


def status(response: bytes) -> int:
    """The status code of the first response in ``response``; 0 if there is none."""
    parts = response.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def request_of_size(size: int) -> bytes:
    """A GET /monitor whose head (request line to blank line) is exactly ``size`` bytes."""
    start = b"GET /monitor HTTP/1.1\r\nHost: x\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


# Half-close: the request, then FIN, then the whole answer and the server's FIN.


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /monitor HTTP/1.1\r\nHost: x\r\n\r\n", id="http11"),
        pytest.param(b"GET /monitor HTTP/1.0\r\n\r\n", id="http10"),
        pytest.param(b"GET /\r\n", id="f5-one-line"),
    ],
)
def test_half_closed_probe_gets_the_full_answer(node: Node, request_bytes: bytes):
    response = half_closed_exchange(node.port, request_bytes)
    assert status(response) == 200, response
    assert ANSWER in response


# The probe routes answer within one event-loop step, which may win the race against
# asyncio's handling of the EOF; /role goes through FastAPI and never does by luck.
def test_half_closed_api_request_gets_the_full_answer(node: Node):
    response = half_closed_exchange(node.port, b"GET /role HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status(response) == 200, response
    assert b'"role":"MASTER"' in response


def test_half_close_after_pipelined_requests_answers_them_all(node: Node):
    one = b"GET /monitor HTTP/1.1\r\nHost: x\r\n\r\n"
    response = half_closed_exchange(node.port, one * 3)
    assert response.count(b"HTTP/1.1 200 ") == 3, response
    assert response.count(ANSWER) == 3


def test_half_close_without_a_request_is_closed(node: Node):
    assert half_closed_exchange(node.port, b"") == b""


def test_half_close_mid_request_is_closed(node: Node):
    assert half_closed_exchange(node.port, b"GET /monitor HTTP/1.1\r\nHost:") == b""


def test_keep_alive_still_serves_request_after_request(node: Node):
    with connect(node.port) as sock:
        for _ in range(3):
            sock.sendall(b"GET /monitor HTTP/1.1\r\nHost: x\r\n\r\n")
            response = b""
            for _ in range(100):
                response += sock.recv(65536)
                if ANSWER in response and response.endswith(b"\n"):
                    break
            assert status(response) == 200, response


# The header limit.


def test_headers_over_the_limit_get_431_and_a_close(node: Node):
    with connect(node.port) as sock:
        sock.sendall(request_of_size(20 * 1024))
        response = read_to_eof(sock)
    assert status(response) == 431, response
    assert b"connection: close" in response.lower()


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        pytest.param(MAX_HEADER_BYTES, 200, id="at-the-limit"),
        pytest.param(MAX_HEADER_BYTES + 1, 431, id="one-byte-over"),
    ],
)
def test_the_limit_is_exact_even_in_small_packets(node: Node, size: int, expected: int):
    request = request_of_size(size) + b"GET /monitor HTTP/1.0\r\n\r\n"
    with connect(node.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(request), 1000):
            sock.sendall(request[i : i + 1000])
        response = read_to_eof(sock)
    assert status(response) == expected, response[:200]


def test_the_count_starts_again_for_each_request(node: Node):
    request = request_of_size(MAX_HEADER_BYTES * 3 // 4)
    with connect(node.port) as sock:
        sock.sendall(request * 3 + b"GET /monitor HTTP/1.0\r\n\r\n")
        response = read_to_eof(sock)
    assert response.count(ANSWER) == 4, response[:200]


HUGE = 50 * 1024 * 1024
CHUNK = 64 * 1024


def send_huge_header(port: int, stop: threading.Event) -> tuple[int, str] | None:
    """Send one 50 MB header; (bytes sent, what ended it), or None if ``stop`` did."""
    chunk = b"a" * CHUNK
    sent = 0
    with connect(port) as sock:
        try:
            sock.sendall(b"GET /monitor HTTP/1.1\r\nHost: x\r\nX-Big: ")
            while sent < HUGE and not stop.is_set():
                sock.sendall(chunk)
                sent += CHUNK
        except OSError as exc:  # a reset or a broken pipe: the server closed on us
            return sent, type(exc).__name__
        if stop.is_set():
            return None
        try:
            return sent, str(status(read_to_eof(sock)) or "closed")
        except OSError as exc:
            return sent, type(exc).__name__


def test_huge_header_does_not_slow_the_monitor(node: Node):
    stop = threading.Event()
    outcomes: list[tuple[int, str]] = []

    def big_sender() -> None:
        deadline = time.monotonic() + 30
        for _ in range(200):
            if stop.is_set() or time.monotonic() > deadline:
                return
            outcome = send_huge_header(node.port, stop)
            if outcome is not None:
                outcomes.append(outcome)

    sender = threading.Thread(target=big_sender)
    sender.start()
    try:
        answers = [monitor(node.port) for _ in range(40)]
    finally:
        stop.set()
        sender.join(40)
    assert answers == [200] * len(answers), answers
    assert outcomes, "the big sender never finished a try"
    cut_short = {"431", "closed", "ConnectionResetError", "BrokenPipeError"}
    assert all(sent < HUGE and how in cut_short for sent, how in outcomes), outcomes


# Idle and half-sent connections.


def fd_soft_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections; every other one sends half a request line and stops."""
    socks = []
    try:
        for i in range(count):
            sock = connect(port)
            socks.append(sock)
            if i % 2:
                sock.sendall(b"GET /moni")
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def test_idle_and_half_sent_connections_do_not_block_the_monitor(node: Node):
    count = min(1000, fd_soft_limit() - 200)
    socks = open_idle(node.port, count)
    try:
        during = [monitor(node.port) for _ in range(5)]
    finally:
        close_all(socks)
    assert during == [200] * 5
    assert monitor(node.port) == 200
    assert node.role()["role"] == "MASTER"


@contextlib.contextmanager
def soft_fd_limit(limit: int) -> Iterator[None]:
    """Lower this process's soft open-file limit, so that children start with it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_node_started_with_a_low_soft_fd_limit_still_serves_many_connections(tmp_path: Path):
    low, count = 256, 400
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < count + 200:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for {count} connections")
    if fd_soft_limit() < count + 200:
        pytest.skip(f"this process may not open {count} sockets")
    with Cluster(tmp_path, ["--state-dir", str(tmp_path / "state")]) as cluster:
        with soft_fd_limit(low):
            node = cluster.add("solo")
        cluster.wait_master()
        socks = open_idle(node.port, count)
        try:
            during = [monitor(node.port) for _ in range(3)]
        finally:
            close_all(socks)
    assert during == [200] * 3
