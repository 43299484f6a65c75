"""A real node serving its API over TLS: verification, client certificates, SIGHUP rotation.

Every node listens on 127.0.0.1 and is stopped by its PID. Certificates come
from throw-away CAs (tests/support/certs.py).
"""

from __future__ import annotations

import contextlib
import signal
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.certs import CA, Issued
from tests.support.certs import client_context as client
from tests.support.haproxy import run_vipmon
from tests.support.nodes import Cluster, Node, solo_master, wait_for
from tests.support.ports import free_port

TOKEN = "tls-test-token-0123456789"


def tls_args(server: Issued) -> list[str]:
    return ["--tls-cert-file", str(server.cert), "--tls-key-file", str(server.key)]


@contextlib.contextmanager
def tls_master(base: Path, server: Issued, tls: ssl.SSLContext, *extra: str) -> Iterator[Node]:
    """One node on the embedded store, serving HTTPS with ``server``, once it is master."""
    args = ["--state-dir", str(base / "state"), *tls_args(server), *extra]
    with Cluster(base, args, env={"VIPMON_ADMIN_TOKEN": TOKEN}, tls=tls) as cluster:
        node = cluster.add("solo")
        cluster.wait_master()
        yield node


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path / "ca")


def plain_http_answer(port: int) -> int:
    """The status a plain-HTTP /monitor on the TLS port gets; 0 when it gets none."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/monitor", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_https_is_verified_and_plain_http_never_gets_200(tmp_path: Path, ca: CA):
    with tls_master(tmp_path, ca.issue("server"), client(ca)) as node:
        status, body = node.monitor()
        assert (status, body.split()[0]) == (200, "ROLE=MASTER")
        assert node.role()["node"] == "solo"
        assert plain_http_answer(node.port) != 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(node.url + "/monitor", timeout=2, verify=client(CA(tmp_path / "other")))
        shown = run_vipmon("status", "--url", node.url, "--ca-file", str(ca.cert))
        assert shown.returncode == 0, shown.stderr
        assert "master: solo (term " in shown.stdout
        unverified = run_vipmon("status", "--url", node.url, "--timeout", "2")
        assert unverified.returncode == 1
        assert "certificate verify failed" in unverified.stderr.lower()


def test_client_ca_for_all_paths_refuses_a_client_without_certificate(tmp_path: Path, ca: CA):
    holder = ca.issue("client", client=True, server=False)
    stranger = CA(tmp_path / "stranger").issue("stranger", client=True, server=False)
    extra = ["--tls-client-ca-file", str(ca.cert)]
    with tls_master(tmp_path, ca.issue("server"), client(ca, holder), *extra) as node:
        assert node.monitor()[0] == 200
        for ctx in (client(ca), client(ca, stranger)):
            with pytest.raises(httpx.HTTPError):
                httpx.get(node.url + "/monitor", timeout=2, verify=ctx)


def test_client_ca_for_admin_only(tmp_path: Path, ca: CA):
    holder = ca.issue("client", client=True, server=False)
    extra = ["--tls-client-ca-file", str(ca.cert), "--tls-client-auth", "admin"]
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with tls_master(tmp_path, ca.issue("server"), client(ca), *extra) as node:
        assert node.monitor()[0] == 200  # no client certificate needed here
        url, auth = node.url + "/admin/pause", {"Authorization": f"Bearer {TOKEN}"}
        refused = httpx.post(url, headers=auth, timeout=5, verify=client(ca))
        assert (refused.status_code, refused.json()) == (
            403,
            {"detail": "client certificate required"},
        )
        accepted = httpx.post(url, headers=auth, timeout=5, verify=client(ca, holder))
        assert (accepted.status_code, accepted.json()) == (200, {"paused": True})
        common = ["--url", node.url, "--token-file", str(token), "--ca-file", str(ca.cert)]
        no_cert = run_vipmon("resume", *common)
        assert no_cert.returncode == 1 and "refused (403)" in no_cert.stderr
        with_cert = run_vipmon(
            "resume", *common, "--cert-file", str(holder.cert), "--key-file", str(holder.key)
        )
        assert with_cert.returncode == 0, with_cert.stderr
        assert with_cert.stdout.strip() == "paused=False"


def verifies_with(node: Node, ca: CA) -> bool:
    """A new connection to ``node`` presents a certificate ``ca`` signed."""
    try:
        return httpx.get(node.url + "/monitor", timeout=1, verify=client(ca)).status_code == 200
    except httpx.HTTPError:
        return False


def copy_pair(source: Issued, target: Issued) -> None:
    target.cert.write_bytes(source.cert.read_bytes())
    target.key.write_bytes(source.key.read_bytes())


def test_sighup_rotates_the_certificate_and_keeps_the_role(tmp_path: Path, ca: CA):
    server = ca.issue("server")
    second = CA(tmp_path / "second", name="second-ca")
    with tls_master(tmp_path, server, client(ca)) as node:
        term = node.role()["term"]
        with httpx.Client(verify=client(ca), timeout=2) as kept:
            assert kept.get(node.url + "/role").status_code == 200
            copy_pair(second.issue("server2"), server)
            node.signal(signal.SIGHUP)
            wait_for(lambda: verifies_with(node, second), timeout=10, what="the new certificate")
            assert not verifies_with(node, ca)
            # The connection opened before the reload goes on (a new one would fail: old CA).
            assert kept.get(node.url + "/role").json()["term"] == term
        node.tls = client(second)
        assert (node.role()["role"], node.role()["term"]) == ("MASTER", term)

        server.cert.write_text("garbage\n")
        node.signal(signal.SIGHUP)
        wait_for(lambda: "TLS reload failed" in node.log(), timeout=10, what="the error line")
        assert verifies_with(node, second)
        assert (node.role()["role"], node.role()["term"]) == ("MASTER", term)
        log = node.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "'tls_cert_file'" in errors[0], errors
    assert "TLS reloaded" in log
    assert "Traceback" not in log


def test_sighup_without_tls_is_logged_and_changes_nothing(tmp_path: Path):
    with solo_master(tmp_path) as node:
        term = node.role()["term"]
        node.signal(signal.SIGHUP)
        wait_for(lambda: "no TLS configured" in node.log(), timeout=10, what="the INFO line")
        assert node.monitor()[0] == 200
        assert node.role()["term"] == term


@pytest.mark.parametrize("bad", ["tls_cert_file", "tls_key_file"])
def test_unusable_tls_file_at_start_exits_2_with_one_line(tmp_path: Path, ca: CA, bad: str):
    server = ca.issue("server")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("garbage\n")
    files = {"tls_cert_file": server.cert, "tls_key_file": server.key, bad: garbage}
    done = run_vipmon(
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "--state-dir",
        str(tmp_path / "state"),
        "--tls-cert-file",
        str(files["tls_cert_file"]),
        "--tls-key-file",
        str(files["tls_key_file"]),
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vipmon: invalid setting '{bad}': "), lines
