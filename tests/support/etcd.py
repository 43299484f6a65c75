"""Real etcd clusters for tests: Debian's ``/usr/bin/etcd`` on loopback ports.

Every member listens on 127.0.0.1 only, keeps its data and its log under the
cluster's base directory, and is signalled and reaped by its own PID only.
Every wait is bounded in count and in time.

Two ways to start one::

    cluster = EtcdCluster(base_dir, size=3)
    cluster.start()

    cluster = EtcdCluster()
    cluster.start(3, base_dir)

or ``with EtcdCluster(base_dir, size=3) as cluster: ...``.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.support.nodes import wait_for
from tests.support.ports import free_port

ETCD_BIN = Path("/usr/bin/etcd")
HOST = "127.0.0.1"
START_TIMEOUT = 20.0
POLL_INTERVAL = 0.05


def _get(url: str, timeout: float) -> httpx.Response | None:
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            return client.get(url)
    except httpx.HTTPError:
        return None


def _post(url: str, body: dict[str, Any], timeout: float, token: str | None = None) -> Any:
    headers = {"Authorization": token} if token else {}
    with httpx.Client(trust_env=False, timeout=timeout) as client:
        reply = client.post(url, json=body, headers=headers)
    reply.raise_for_status()
    return reply.json()


@dataclass
class EtcdMember:
    """One etcd process. ``pid`` is the current process; ``restart`` makes a new one."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = field(default=False)

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def launch(self) -> None:
        """Start the process; does not wait for it to serve."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        out = self.log_path.with_suffix(".out").open("ab")
        try:
            self.proc = subprocess.Popen(
                [str(ETCD_BIN), *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        finally:
            out.close()
        self.stopped = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, timeout: float = 0.5) -> bool:
        """True when the member answers ``/health`` with ``{"health": "true"}``."""
        self._raise_if_exited()
        reply = _get(self.client_url + "/health", timeout)
        if reply is None or reply.status_code != 200:
            return False
        try:
            return bool(reply.json().get("health") == "true")
        except ValueError:
            return False

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        wait_for(
            self.healthy,
            timeout=timeout,
            what=f"etcd member {self.name} to be healthy",
            interval=POLL_INTERVAL,
        )

    def kill(self) -> None:
        """SIGKILL the member and reap it."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self.stopped = False

    def stop(self) -> None:
        """SIGSTOP: the process freezes and keeps its sockets open."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.stopped = True

    def cont(self) -> None:
        """SIGCONT a member frozen by :meth:`stop`."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def restart(self, *, wait_healthy: bool = True) -> None:
        """Kill the member if it runs, start it again on the same ports and data.

        With ``wait_healthy`` it waits until the member answers ``/health``
        (which needs a quorum); otherwise only until it answers ``/version``.
        """
        self.kill()
        self.launch()
        if wait_healthy:
            self.wait_healthy()
        else:
            wait_for(
                self._serves,
                timeout=START_TIMEOUT,
                what=f"etcd member {self.name} to serve",
                interval=POLL_INTERVAL,
            )

    def status(self, timeout: float = 0.5) -> dict[str, Any] | None:
        """The member's ``/v3/maintenance/status`` reply, or None if it does not answer."""
        if self.stopped or not self.alive():
            return None
        try:
            reply = _post(self.client_url + "/v3/maintenance/status", {}, timeout)
        except (httpx.HTTPError, ValueError):
            return None
        return reply if isinstance(reply, dict) else None

    def log_tail(self, size: int = 4000) -> str:
        chunks = []
        for path in (self.log_path, self.log_path.with_suffix(".out")):
            if path.exists():
                chunks.append(path.read_bytes()[-size:].decode("utf-8", "replace"))
        return "\n".join(chunks)

    def _serves(self) -> bool:
        self._raise_if_exited()
        return _get(self.client_url + "/version", 0.5) is not None

    def _raise_if_exited(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"etcd member {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )


class EtcdCluster:
    """A cluster of ``size`` etcd members started by this test process.

    ``extra_args`` are appended to every member's command line. ``peer_url``,
    if given, maps (member name, its real peer port) to the peer URL the
    member advertises to the others (a proxy in front of that port); the
    member still listens on the real port.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        size: int = 1,
        extra_args: list[str] | None = None,
        peer_url: Callable[[str, int], str] | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.size = size
        self.extra_args = list(extra_args or [])
        self.peer_url = peer_url
        self.members: list[EtcdMember] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self, n: int | None = None, base_dir: Path | None = None) -> EtcdCluster:
        """Start ``n`` members and wait until every one answers ``/health`` OK.

        Raises AssertionError (after killing what it started) if the cluster
        is not healthy within 20 s or a member exits.
        """
        if self.members:
            raise RuntimeError("this cluster was already started")
        size = n if n is not None else self.size
        if size < 1:
            raise ValueError("a cluster needs at least one member")
        base = base_dir or self.base_dir
        if base is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vipmon-etcd-")
            base = Path(self._tmp.name)
        base.mkdir(parents=True, exist_ok=True)
        self.base_dir, self.size = base, size

        names = [f"m{i}" for i in range(size)]
        ports = [(free_port(HOST), free_port(HOST)) for _ in names]
        advertised = {
            nm: self.peer_url(nm, peer) if self.peer_url else f"http://{HOST}:{peer}"
            for nm, (_, peer) in zip(names, ports, strict=True)
        }
        initial = ",".join(f"{nm}={url}" for nm, url in advertised.items())
        token = f"vipmon-test-{uuid.uuid4().hex[:12]}"
        for name, (client, peer) in zip(names, ports, strict=True):
            data_dir = base / f"{name}.etcd"
            log_path = base / f"{name}.log"
            args = [
                "--name", name,
                "--data-dir", str(data_dir),
                "--listen-client-urls", f"http://{HOST}:{client}",
                "--advertise-client-urls", f"http://{HOST}:{client}",
                "--listen-peer-urls", f"http://{HOST}:{peer}",
                "--initial-advertise-peer-urls", advertised[name],
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                "--logger", "zap",
                "--log-outputs", str(log_path),
                "--log-level", "error",
                *self.extra_args,
            ]  # fmt: skip
            self.members.append(EtcdMember(name, client, peer, data_dir, log_path, args))
        try:
            for member in self.members:
                member.launch()
            self.wait_healthy()
        except BaseException:
            self.stop_all()
            raise
        return self

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def member(self, i: int) -> EtcdMember:
        return self.members[i]

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every member answers ``/health`` OK (bounded by ``timeout``)."""

        def all_healthy() -> bool:
            return all(m.healthy() for m in self.members)

        wait_for(
            all_healthy,
            timeout=timeout,
            what=f"{len(self.members)} etcd member(s) healthy",
            interval=POLL_INTERVAL,
        )

    def leader_index(self, timeout: float = 5.0) -> int:
        """Index of the member that reports itself leader; waits up to ``timeout`` s."""
        found: list[int] = []

        def leader_found() -> bool:
            for i, member in enumerate(self.members):
                st = member.status()
                if st is not None and st.get("leader") == st.get("header", {}).get("member_id"):
                    found.append(i)
                    return True
            return False

        wait_for(leader_found, timeout=timeout, what="an etcd leader", interval=POLL_INTERVAL)
        return found[0]

    def make_leader(self, i: int, timeout: float = 15.0) -> None:
        """Move etcd's leadership to member ``i`` (a no-op if it leads); wait until it does.

        ``timeout`` also bounds the wait for any leader first: members that were
        frozen a moment ago can take a few elections to settle on one.
        """
        if self.leader_index(timeout=timeout) == i:
            return
        target = self.member(i).status()
        assert target is not None, f"etcd member {self.member(i).name} does not answer"
        leader = self.member(self.leader_index(timeout=timeout))
        _post(
            leader.client_url + "/v3/maintenance/transfer-leadership",
            {"targetID": target["header"]["member_id"]},
            timeout,
        )
        wait_for(
            lambda: self.leader_index(timeout=timeout) == i,
            timeout=timeout,
            what=f"etcd member {self.member(i).name} to lead",
            interval=POLL_INTERVAL,
        )

    def member_ids(self, timeout: float = 5.0) -> dict[str, str]:
        """Member name -> member id in hex (as etcd's peer headers carry it)."""
        for member in self.members:
            if member.stopped or not member.alive():
                continue
            try:
                reply = _post(member.client_url + "/v3/cluster/member/list", {}, timeout)
            except (httpx.HTTPError, ValueError):
                continue
            return {m["name"]: format(int(m["ID"]), "x") for m in reply.get("members", [])}
        raise AssertionError("no etcd member answered the member list")

    def enable_auth(self, password: str, user: str = "root") -> None:
        """Create ``user`` with the ``root`` role and turn auth on, via the JSON gateway."""
        url = self.members[0].client_url + "/v3/auth"
        _post(url + "/user/add", {"name": user, "password": password}, 5.0)
        _post(url + "/role/add", {"name": "root"}, 5.0)
        _post(url + "/user/grant", {"user": user, "role": "root"}, 5.0)
        _post(url + "/enable", {}, 5.0)

    def put(self, key: str, value: bytes, token: str | None = None) -> int:
        """Write a key directly (no vipmon code involved); return the new revision."""
        body = {
            "key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(value).decode(),
        }
        reply = _post(self.members[0].client_url + "/v3/kv/put", body, 5.0, token)
        return int(reply["header"]["revision"])

    def stop_all(self) -> None:
        """SIGCONT, SIGKILL and reap every process this cluster started. Safe to call twice."""
        for member in self.members:
            if member.alive():
                assert member.proc is not None
                os.kill(member.proc.pid, signal.SIGCONT)
                os.kill(member.proc.pid, signal.SIGKILL)
            if member.proc is not None:
                member.proc.wait(10)
            member.stopped = False
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EtcdCluster:
        if not self.members:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
