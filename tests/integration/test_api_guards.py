"""The API's guards on real nodes: forwarded headers, busy ports, a node id in use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.nodes import REPO, Cluster, wait_for
from tests.support.ports import free_port
from tests.support.probe import Prober, violations

FORGED = {"X-Forwarded-For": "10.1.1.1"}


def local(base: Path, state: Path) -> Cluster:
    return Cluster(base, ["--state-dir", str(state)])


def test_a_forged_forwarded_for_does_not_pass_allow_cidr(tmp_path: Path):
    with local(tmp_path, tmp_path / "state") as c:
        node = c.add("n1", ["--allow-cidr", "10.0.0.0/8"])
        r = httpx.get(node.url + "/role", headers=FORGED, timeout=2)
        assert r.status_code == 403, r.text
        assert r.json() == {"detail": "client network not allowed"}


def test_forwarded_for_is_believed_from_a_trusted_proxy_only(tmp_path: Path):
    with local(tmp_path, tmp_path / "state") as c:
        node = c.add("n1", ["--allow-cidr", "10.0.0.0/8", "--trusted-proxy", "127.0.0.0/8"])
        assert httpx.get(node.url + "/role", headers=FORGED, timeout=2).status_code == 200
        other = {"X-Forwarded-For": "192.0.2.7"}
        assert httpx.get(node.url + "/role", headers=other, timeout=2).status_code == 403
        assert httpx.get(node.url + "/role", timeout=2).status_code == 403  # 127.0.0.1 itself


def run_node(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPMON_")}
    cmd = [sys.executable, "-m", "app", "run", "--host", "127.0.0.1"]
    cmd += ["--state-dir", str(tmp_path / "state"), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=30)


def test_an_agent_port_equal_to_the_api_port_is_one_line(tmp_path: Path):
    port = str(free_port())
    done = run_node(tmp_path, "--port", port, "--agent-port", port)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "invalid setting 'agent_port'" in done.stderr, done.stderr


def test_busy_ports_are_one_line_naming_the_field(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        for args, field in (
            (["--port", busy], "port"),
            (["--port", str(free_port()), "--agent-port", busy], "agent_port"),
        ):
            done = run_node(tmp_path, *args)
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr
            lines = [line for line in done.stderr.splitlines() if "invalid setting" in line]
            assert lines == [lines[0]] and f"'{field}'" in lines[0], done.stderr


def test_a_second_process_with_a_live_node_id_waits_and_cluster_shows_the_true_url(
    tmp_path: Path,
):
    state = tmp_path / "state"
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    with local(first_dir, state) as a, local(second_dir, state) as b:
        first = a.add("n1")
        a.wait_master()
        with Prober([("first", first.url)], max_seconds=60) as p:
            second = b.add("n1")
            p.add("second", second.url)
            # Both nodes read the store: the newcomer has seen the live record.
            wait_for(
                lambda: "is held by a live member record" in second.log(),
                timeout=15,
                what="the newcomer's warning",
            )
            assert second.monitor()[0] == 503
            for node in (first, second):
                members = node.get("/cluster").json()["members"]
                assert [(m["id"], m["url"]) for m in members] == [("n1", first.url)]
            first.kill()
            # The crashed first process's record expires within a TTL: n1 returns.
            wait_for(second.is_master, timeout=20, interval=0.05, what="n1 to return")
        records = p.stop()
        assert second.log().count("is held by a live member record") == 1
        assert "ours again" in second.log()
        assert violations(records) == []
        members = second.get("/cluster").json()["members"]
        assert [(m["id"], m["url"]) for m in members] == [("n1", second.url)]


def test_sighup_rotates_the_admin_token_and_keeps_it_when_the_file_is_bad(tmp_path: Path):
    old, new = "old-token-0123456789abcdef", "new-token-0123456789abcdef"
    token_file = tmp_path / "admin.token"
    token_file.write_text(old + "\n")
    with local(tmp_path, tmp_path / "state") as c:
        node = c.add("n1", ["--admin-token-file", str(token_file)])
        c.wait_master()
        term = node.role()["term"]

        def resume(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.post(node.url + "/admin/resume", headers=headers, timeout=10).status_code

        assert (resume(old), resume(new)) == (200, 403)
        token_file.write_text(new + "\n")
        node.signal(signal.SIGHUP)
        wait_for(lambda: "admin token reloaded" in node.log(), timeout=10, what="the reload")
        assert (resume(old), resume(new)) == (403, 200)

        token_file.write_text("short\n")
        node.signal(signal.SIGHUP)
        wait_for(lambda: "admin token reload failed" in node.log(), timeout=10, what="the error")
        assert resume(new) == 200
        assert (node.role()["role"], node.role()["term"]) == ("MASTER", term)
        log = node.log()
    assert old not in log and new not in log
    assert "Traceback" not in log
