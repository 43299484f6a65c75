"""The tmsh script of ``vipmon adc-config f5``, checked the way BIG-IP uses it.

There is no BIG-IP here, so the test does what its HTTP monitor does: send
the send string raw over TCP to a running node's monitor port (``\\r\\n``
unescaped), read the whole response, and match recv and recv-disable as
regular expressions over all of it (status line, headers and body; F5
ignores the status code). The states are the ones the script's notes promise.
"""

from __future__ import annotations

import re
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from app.probe.answer import monitor_line
from app.role import Role, Snapshot
from tests.support import haproxy as hap
from tests.support.nodes import Cluster, Node


def monitor_strings(script: str) -> tuple[str, str, str]:
    """(send, recv, recv-disable) from the script's monitor command, send unescaped."""
    line = next(ln for ln in script.splitlines() if "create ltm monitor http" in ln)
    found = dict(re.findall(r'\b(send|recv|recv-disable) "((?:[^"\\]|\\.)*)"', line))
    send = found["send"].replace("\\r", "\r").replace("\\n", "\n")
    return send, found["recv"], found["recv-disable"]


def f5_state(response: str, recv: str, recv_disable: str) -> str:
    """What BIG-IP makes of one response (see the script's notes)."""
    if re.search(recv, response):
        return "up (enabled)"
    if re.search(recv_disable, response):
        return "up (disabled)"
    return "down after timeout"


def probe(node: Node, send: str) -> str:
    with socket.create_connection(("127.0.0.1", node.port), timeout=3) as sock:
        sock.sendall(send.encode())
        chunks = []
        while chunk := sock.recv(65536):  # the send string says Connection: Close
            chunks.append(chunk)
    return b"".join(chunks).decode()


def script_for(cluster: Cluster) -> str:
    args = ["--vip", "127.0.0.1:443"]
    for n in cluster.nodes:
        args += ["--node", f"{n.node_id}=127.0.0.1:{n.port}/{n.port}"]
    return hap.adc_config("f5", *args)


@pytest.fixture
def cluster(tmp_path: Path):
    with Cluster(tmp_path, ["--backend", "local", "--state-dir", str(tmp_path / "state")]) as c:
        c.add("n1")
        c.add("n2")
        yield c


def test_send_string_is_a_request_the_service_answers(cluster: Cluster):
    send, recv, recv_disable = monitor_strings(script_for(cluster))
    assert send.startswith("GET /monitor HTTP/1.1\r\nHost: ") and send.endswith("\r\n\r\n")
    assert "\r\nConnection: Close\r\n" in send
    master = cluster.wait_master()
    standby = next(n for n in cluster.nodes if n is not master)
    on_master, on_standby = probe(master, send), probe(standby, send)
    assert on_master.startswith("HTTP/1.1 200 ")
    assert on_standby.startswith("HTTP/1.1 503 ")
    assert f5_state(on_master, recv, recv_disable) == "up (enabled)"
    assert f5_state(on_standby, recv, recv_disable) == "down after timeout"


def test_draining_and_other_roles_give_the_promised_states(cluster: Cluster):
    script = script_for(cluster)
    _, recv, recv_disable = monitor_strings(script)
    master = cluster.wait_master()
    live = probe(master, monitor_strings(script)[0])
    head = live.split("\r\n\r\n", 1)[0].replace("200 OK", "503 Service Unavailable")
    snap = Snapshot(
        node_id="n1",
        backend="local",
        holds_key=True,
        term=9,
        draining=True,
        lease_valid_until=10.0,
        leader_id="n1",
    )
    assert snap.role_at(5.0) is Role.DRAINING
    expected = {
        Role.DRAINING: "up (disabled)",
        Role.STANDBY: "down after timeout",
        Role.UNKNOWN: "down after timeout",
        Role.MAINTENANCE: "down after timeout",
    }
    for role, state in expected.items():
        # The live response's status line and headers, with the role's header and body.
        # The node name holds "MASTER" on purpose: only the ROLE= token may match.
        headers = re.sub(r"(?im)^(x-vipmon-role): \w+", rf"\1: {role.value}", head)
        assert f"x-vipmon-role: {role.value.lower()}" in headers.lower()
        response = f"{headers}\r\n\r\n{monitor_line(replace(snap, node_id='n-MASTER'), role)}"
        assert f5_state(response, recv, recv_disable) == state, role
    assert "up (disabled)" in script and "service-down-action reset" in script
