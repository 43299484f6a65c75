"""The request forms real ADCs send, written raw to a socket of a running node."""

import socket
from collections.abc import Iterator

import pytest

from tests.support.nodes import Node, solo_master


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with solo_master(tmp_path_factory.mktemp("forms")) as node:
        yield node


def raw(node: Node, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        for _ in range(100):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /monitor HTTP/1.0\r\n\r\n", id="http10-no-host"),
        pytest.param(b"GET /monitor HTTP/1.1\r\nConnection: close\r\n\r\n", id="http11-no-host"),
        pytest.param(b"GET /\r\n", id="f5-default-send-string"),
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="root-http10"),
        pytest.param(
            b"GET /monitor HTTP/1.1\r\nHost: vipmon\r\nConnection: Close\r\n\r\n", id="f5-custom"
        ),
    ],
)
def test_master_answers_every_form(master: Node, request_bytes: bytes):
    response = raw(master, request_bytes)
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"200", response
    assert b"\r\n\r\nROLE=MASTER node=solo term=" in response


@pytest.mark.parametrize("method", [b"HEAD", b"OPTIONS"])
def test_head_and_options_get_the_get_status(master: Node, method: bytes):
    response = raw(master, method + b" /monitor HTTP/1.0\r\n\r\n")
    assert response.split(b"\r\n", 1)[0].split()[1] == b"200", response
    assert b"x-vipmon-role: MASTER" in response.lower().replace(b"master", b"MASTER")


def test_trailing_slash_is_not_redirected(master: Node):
    response = raw(master, b"GET /monitor/ HTTP/1.0\r\n\r\n")
    assert response.split(b"\r\n", 1)[0].split()[1] == b"404"
    assert b"location:" not in response.lower()
