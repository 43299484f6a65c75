"""A bootstrap bundle on a real etcd: ``vipmon run`` on the bundle, then ``bootstrap auth``.

One host at 127.0.0.1: ``vipmon bootstrap`` writes its bundle, ``install.sh``
places it under a prefix in the test's directory, and the test starts Debian's
etcd with the bundle's own ``etcd.conf.yml``, changed only where a test must: the
ports (free loopback ports, not 2379/2380) and the paths (under the prefix).
TLS for clients and peers with client certificates is the bundle's. Then:

* ``vipmon run --config`` with the bundle's ``vipmon.toml`` (same changes) becomes
  master, serving its API over HTTPS, and stays master with the same term while
  ``vipmon bootstrap auth`` enables auth under it (the README's order);
* ``bootstrap auth`` run again changes nothing and succeeds; the ``vipmon`` user
  may write under ``/vipmon/<cluster>/`` only; a wrong root password fails in one line.

The etcd process is started and stopped here by its PID.
"""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from app.cli import main
from tests.support.etcd import ETCD_BIN
from tests.support.nodes import Node, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.etcd

CLUSTER = "bt"


@dataclass(frozen=True)
class World:
    out: Path
    root: Path  # the install prefix
    url: str  # etcd's client URL
    admin: ssl.SSLContext  # the admin's client certificate, trusting the CA

    def post(self, path: str, body: dict, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": token} if token else {}
        with httpx.Client(verify=self.admin, timeout=5, trust_env=False) as client:
            return client.post(self.url + "/v3" + path, json=body, headers=headers)


def under(root: Path, path: str) -> str:
    return str(root / path.lstrip("/"))


def etcd_config(root: Path, client: int, peer: int) -> Path:
    path = root / "etc/vipmon/etcd/etcd.conf.yml"
    config = yaml.safe_load(path.read_text())
    for key in ("listen-client-urls", "advertise-client-urls"):
        config[key] = config[key].replace(":2379", f":{client}")
    for key in ("listen-peer-urls", "initial-advertise-peer-urls", "initial-cluster"):
        config[key] = config[key].replace(":2380", f":{peer}")
    config["data-dir"] = under(root, config["data-dir"])
    for side in ("client-transport-security", "peer-transport-security"):
        for key in ("cert-file", "key-file", "trusted-ca-file"):
            config[side][key] = under(root, config[side][key])
    config["log-outputs"] = [str(root / "etcd.log")]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    if not ETCD_BIN.exists():
        pytest.fail("/usr/bin/etcd is missing: install Debian's etcd-server (make system-deps)")
    base = tmp_path_factory.mktemp("bootstrap-etcd")
    out, root = base / "out", base / "root"
    assert (
        main(["bootstrap", "--cluster", CLUSTER, "--host", "n1=127.0.0.1", "--out", str(out)]) == 0
    )
    env = {"PATH": os.environ["PATH"], "PREFIX": str(root)}
    done = subprocess.run(["sh", str(out / "n1" / "install.sh")], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    client, peer = free_port(), free_port()
    config = etcd_config(root, client, peer)
    admin = ssl.create_default_context(cafile=out / "admin" / "ca.crt")
    admin.load_cert_chain(out / "admin" / "admin.crt", out / "admin" / "admin.key")
    world = World(out, root, f"https://127.0.0.1:{client}", admin)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    with (base / "etcd.out").open("wb") as log:
        proc = subprocess.Popen([str(ETCD_BIN), "--config-file", str(config)], env=clean,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)  # fmt: skip
    try:

        def healthy() -> bool:
            assert proc.poll() is None, (root / "etcd.log").read_text()[-3000:]
            try:
                with httpx.Client(verify=admin, timeout=0.5, trust_env=False) as c:
                    return c.get(world.url + "/health").json().get("health") == "true"
            except (httpx.HTTPError, ValueError):
                return False

        wait_for(healthy, timeout=20, interval=0.1, what="the bundle's etcd to be healthy")
        yield world
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def auth(world: World) -> int:
    return main(["bootstrap", "auth", "--out", str(world.out), "--endpoint", world.url])


def metric(node: Node, name: str) -> float:
    for line in node.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_vipmon_on_the_bundle_is_master_before_and_after_auth_is_enabled(world, capsys, tmp_path):
    """The README's order: the nodes start on etcd without auth, then `bootstrap auth`."""
    installed = world.root / "etc/vipmon/vipmon.toml"
    text = installed.read_text().replace('"/etc/', f'"{world.root}/etc/')
    text = text.replace('"https://127.0.0.1:2379"', f'"{world.url}"')
    config = tmp_path / "vipmon.toml"
    config.write_text(text)
    api = ssl.create_default_context(cafile=world.out / "admin" / "ca.crt")
    node = Node("n1", free_port(), ["--config", str(config)], tmp_path / "n1.log", tls=api)
    try:
        node.start()
        wait_for(node.is_master, timeout=15, what="n1 to become master")
        role = node.role()
        assert role["node"] == "n1" and role["role"] == "MASTER"
        assert auth(world) == 0
        said = capsys.readouterr().out
        assert "auth is off: setting it up" in said
        assert "auth enabled" in said and "user vipmon logs in" in said
        renewals = metric(node, "vipmon_renew_latency_seconds_count")
        wait_for(
            lambda: metric(node, "vipmon_renew_latency_seconds_count") >= renewals + 12,
            timeout=20,
            what="12 renewals after auth enable (three TTLs)",
        )
        after = node.role()
        assert after["role"] == "MASTER" and after["term"] == role["term"], after
    finally:
        node.kill()


def test_auth_is_least_privilege_and_runs_again(world, capsys):
    assert auth(world) == 0
    capsys.readouterr()
    # With auth on, an anonymous request is refused.
    reply = world.post("/kv/put", {"key": b64(f"/vipmon/{CLUSTER}/x"), "value": b64("v")})
    assert reply.status_code != 200
    assert auth(world) == 0
    second = capsys.readouterr().out
    assert "auth is on: checked as root" in second
    assert "auth enabled" not in second and "user vipmon exists" in second
    password = (world.out / "admin" / "etcd-vipmon.password").read_text().strip()
    token = world.post("/auth/authenticate", {"name": "vipmon", "password": password}).json()[
        "token"
    ]
    mine = world.post("/kv/put", {"key": b64(f"/vipmon/{CLUSTER}/x"), "value": b64("v")}, token)
    assert mine.status_code == 200, mine.text
    for key in (f"/vipmon/other-{CLUSTER}/x", "/elsewhere"):
        other = world.post("/kv/put", {"key": b64(key), "value": b64("v")}, token)
        assert "permission denied" in other.text, (key, other.text)


def test_auth_with_a_wrong_root_password_fails_in_one_line(world, capsys, tmp_path):
    assert auth(world) == 0
    capsys.readouterr()  # auth is on, whichever test ran first
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(world.out), str(out)], check=True, timeout=30)
    (out / "admin" / "etcd-root.password").write_text("wrong-password\n")
    assert main(["bootstrap", "auth", "--out", str(out), "--endpoint", world.url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "etcd refused root's password" in err, err
