"""The Layer-2 recipe end to end: two vipmon nodes float a VIP with deploy/l2's hook.

The test builds its own network, removed in ``finally``: a "lan" namespace
holding a bridge, and namespaces for node a, node b and a client, each with an
``eth0`` veth into that bridge. Addresses come from TEST-NET-1 (192.0.2.0/24)
and exist only inside these namespaces; no interface is made in the host's own
namespace. The nodes share one embedded store (the host's filesystem and
monotonic clock) and run ``deploy/l2/vipmon-l2-vip.sh`` as ``--on-change``.
Both start with the VIP on their interface, as a crash would leave it; the
master is stopped with SIGTERM, whose hook removes the VIP before it exits
(a SIGKILLed node runs no hook).

Skipped only when network namespaces cannot be created here.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import REPO, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

SCRIPT = REPO / "deploy" / "l2" / "vipmon-l2-vip.sh"
VIP = "192.0.2.100"
NODE_ADDRS = {"a": "192.0.2.11", "b": "192.0.2.12"}
CLIENT_ADDR = "192.0.2.20"
PREFIX = 24

PROBER = """
import json, sys, httpx
with httpx.Client(timeout=1.0, trust_env=False) as client:
    for line in sys.stdin:
        try:
            r = client.get(line.strip(), headers={"Connection": "close"})
            print(json.dumps({"status": r.status_code, "body": r.text}), flush=True)
        except httpx.HTTPError as exc:
            print(json.dumps({"status": 0, "body": type(exc).__name__}), flush=True)
"""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass
class Lab:
    """The namespaces of one test run, named with a random suffix."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    made: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"vipmon-{name}-{self.suffix}"

    def add_namespace(self, name: str) -> str:
        ns = self.ns(name)
        ip("netns", "add", ns)
        self.made.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def build(self) -> None:
        lan = self.add_namespace("lan")
        ip("-n", lan, "link", "add", "br0", "type", "bridge")
        ip("-n", lan, "link", "set", "br0", "up")
        for name, addr in [*NODE_ADDRS.items(), ("client", CLIENT_ADDR)]:
            ns = self.add_namespace(name)
            port = f"p{name[0]}-{self.suffix}"
            ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", lan, "link", "set", port, "master", "br0")
            ip("-n", lan, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def has_vip(self, name: str) -> bool:
        shown = ip("-n", self.ns(name), "-o", "-4", "addr", "show", "dev", "eth0").stdout
        return f" {VIP}/{PREFIX} " in shown

    def vip_holders(self) -> list[str]:
        return [name for name in NODE_ADDRS if self.has_vip(name)]

    def destroy(self) -> None:
        for ns in reversed(self.made):
            ip("netns", "delete", ns, check=False)
        self.made.clear()


def namespaces_or_skip(lab: Lab) -> None:
    """Try to make a namespace; skip the test only if that is refused."""
    probe = lab.ns("probe")
    try:
        done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("cannot create network namespaces: the ip command (iproute2) is missing")
    if done.returncode != 0:
        pytest.skip(f"cannot create network namespaces here: {done.stderr.strip()}")
    ip("netns", "delete", probe)


class InNamespace:
    """A child process inside a namespace (``ip netns exec`` execs, so the PID is the child's)."""

    def __init__(self, ns: str, argv: list[str], env: dict[str, str], **popen: Any) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], env=env, **popen)

    def stop(self) -> None:
        """SIGKILL our own PID if it still runs, and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class Prober(InNamespace):
    """A long-lived HTTP client in the client namespace: one URL in, one JSON line out."""

    def __init__(self, ns: str) -> None:
        super().__init__(
            ns,
            [sys.executable, "-c", PROBER],
            dict(os.environ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def get(self, url: str) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(url + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        assert ready, f"the prober did not answer for {url} within 10 s"
        answer = json.loads(self.proc.stdout.readline())
        return answer["status"], answer["body"]

    def stop(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        super().stop()


def start_node(lab: Lab, name: str, port: int, state_dir: Path, log: Path) -> InNamespace:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPMON_")}
    env.update(VIP_ADDR=f"{VIP}/{PREFIX}", VIP_DEV="eth0", PYTHONUNBUFFERED="1")
    flags = {
        "node-id": name,
        "host": "0.0.0.0",
        "port": str(port),
        "advertise-url": f"http://{NODE_ADDRS[name]}:{port}",
        "backend": "local",
        "state-dir": str(state_dir),
        "on-change": str(SCRIPT),
        "hook-timeout": "10",
    }
    argv = [sys.executable, "-m", "app", "run"]
    for flag, value in flags.items():
        argv += [f"--{flag}", value]
    with log.open("ab") as out:
        return InNamespace(lab.ns(name), argv, env, cwd=REPO, stdout=out, stderr=out)


def test_the_vip_follows_the_master(tmp_path: Path) -> None:
    lab = Lab()
    namespaces_or_skip(lab)
    port = free_port()
    logs = {name: tmp_path / f"{name}.log" for name in NODE_ADDRS}
    nodes: dict[str, InNamespace] = {}
    prober: Prober | None = None

    def node_logs() -> str:
        return "\n".join(
            f"--- {n}\n{p.read_text(errors='replace')[-3000:]}" for n, p in logs.items()
        )

    def wait(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
        try:
            wait_for(predicate, timeout=timeout, interval=0.2, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{node_logs()}") from None

    try:
        lab.build()
        for name in NODE_ADDRS:  # left over from a crash: the first hook must remove it
            ip("-n", lab.ns(name), "addr", "add", f"{VIP}/{PREFIX}", "dev", "eth0")
        assert lab.vip_holders() == list(NODE_ADDRS)
        prober = Prober(lab.ns("client"))
        for name in NODE_ADDRS:
            nodes[name] = start_node(lab, name, port, tmp_path / "state", logs[name])

        def statuses(names: Iterable[str]) -> dict[str, int]:
            assert prober is not None
            for n in names:
                code = nodes[n].proc.poll()
                assert code is None, f"node {n} exited {code}\n{node_logs()}"
            return {n: prober.get(f"http://{NODE_ADDRS[n]}:{port}/monitor")[0] for n in names}

        def vip_answers(name: str) -> bool:
            assert prober is not None
            status, body = prober.get(f"http://{VIP}:{port}/monitor")
            return status == 200 and body.startswith(f"ROLE=MASTER node={name} ")

        seen: dict[str, int] = {}

        def one_master_one_standby() -> bool:
            seen.update(statuses(NODE_ADDRS))
            return sorted(seen.values()) == [200, 503]

        wait(one_master_one_standby, "one node positive, the other negative", timeout=30)
        first = next(n for n, status in seen.items() if status == 200)
        second = next(n for n in NODE_ADDRS if n != first)
        wait(lambda: lab.vip_holders() == [first], f"the VIP on {first} only")
        wait(lambda: vip_answers(first), f"the client to reach {first} through the VIP")

        os.kill(nodes[first].proc.pid, signal.SIGTERM)
        assert nodes[first].proc.wait(30) == 0
        assert not lab.has_vip(first), "a graceful exit runs the hook that removes the VIP"

        wait(lambda: statuses([second]) == {second: 200}, f"{second} to become master")
        wait(lambda: lab.vip_holders() == [second], f"the VIP to move to {second}")
        wait(lambda: vip_answers(second), f"the client to reach {second} through the VIP")
    finally:
        for node in nodes.values():
            node.stop()
        if prober is not None:
            prober.stop()
        lab.destroy()
