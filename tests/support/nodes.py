"""Start and stop real ``vipmon run`` processes for tests, by PID only.

Every wait is bounded in count and in time. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: One client context for every plain request: httpx builds a new one per call
#: otherwise (``verify=True``), about 70 ms each here, even for http:// URLs.
_SYSTEM_CAS = ssl.create_default_context()


def wait_for(
    predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something true, and return that; fail the test
    after ``timeout`` s. Bounded in count and in time."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        found = predicate()
        if found:
            return found
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


@dataclass
class Node:
    """One ``vipmon run`` child process.

    ``tls``: the node serves HTTPS (its args carry the certificate); every request
    of this class goes over HTTPS, verified with (and presenting) this client context.
    """

    node_id: str
    port: int
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Node:
        """Spawn the process and return once it serves (15 s at most)."""
        self.spawn()
        wait_for(self.answers, timeout=15, what=f"{self.node_id} to serve")
        return self

    def spawn(self) -> None:
        """Spawn the process; :meth:`answers` says when it serves."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIPMON_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "app",
            "run",
            "--node-id",
            self.node_id,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--advertise-url",
            self.url,
            *self.args,
        ]
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
        finally:
            log.close()

    def answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.node_id} exited {self.proc.returncode}: {self.log()}")
        try:
            self.get("/health/live", timeout=0.5)
        except httpx.HTTPError:
            return False
        return True

    def get(self, path: str, timeout: float = 1.0) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout, verify=self.tls or _SYSTEM_CAS)

    def monitor(self) -> tuple[int, str]:
        """(status, body) of /monitor; (0, error) when it does not answer."""
        try:
            r = self.get("/monitor", timeout=0.5)
        except httpx.HTTPError as exc:
            return 0, type(exc).__name__
        return r.status_code, r.text

    def is_master(self) -> bool:
        return self.monitor()[0] == 200

    def role(self) -> dict[str, object]:
        return dict(self.get("/role").json())

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Leave nothing running: SIGCONT, SIGKILL, reap. Only our own PID."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class Cluster:
    """A set of nodes sharing one backend configuration."""

    def __init__(
        self,
        base: Path,
        backend_args: list[str],
        env: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        self.base = base
        self.backend_args = backend_args
        self.env = env or {}
        self.tls = tls
        self.nodes: list[Node] = []

    def _node(self, node_id: str, extra: Iterable[str] = ()) -> Node:
        node = Node(
            node_id,
            free_port(),
            [*self.backend_args, *extra],
            self.base / f"{node_id}.log",
            dict(self.env),
            tls=self.tls,
        )
        self.nodes.append(node)
        return node

    def add(self, node_id: str, extra: Iterable[str] = ()) -> Node:
        return self._node(node_id, extra).start()

    def add_all(self, node_ids: Iterable[str]) -> list[Node]:
        """Add and spawn several nodes at once; return once every one serves."""
        added = [self._node(node_id) for node_id in node_ids]
        for node in added:
            node.spawn()
        wait_for(
            lambda: all(n.answers() for n in added), timeout=15, what="every new node to serve"
        )
        return added

    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.alive() and n.is_master()]

    def wait_master(self, timeout: float = 20, exclude: Node | None = None) -> Node:
        found: list[Node] = []

        def one() -> bool:
            found[:] = [n for n in self.masters() if n is not exclude]
            return len(found) == 1

        wait_for(one, timeout=timeout, interval=0.05, what="exactly one master")
        return found[0]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def solo_master(base: Path) -> Iterator[Node]:
    """One node, ``solo``, on the embedded store under ``base``, once it is master."""
    with Cluster(base, ["--state-dir", str(base / "state")]) as cluster:
        node = cluster.add("solo")
        cluster.wait_master()
        yield node
