"""A real HAProxy for tests, and observers of what it does.

* :class:`HAProxy` runs ``haproxy -db -f <cfg>`` as a child and stops it by PID.
* :class:`StateSampler` reads ``show servers state`` every ``interval`` s.
* :class:`VipClient` sends ``GET /role`` through a frontend every ``interval``
  s, on a new connection each time or on one kept alive, and records which
  node answered (the nodes' ``/role`` stands in for the application).

Every loop is bounded in count and time; all traffic is on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx

from app.adc.runtime import ServerState, command, servers_state
from tests.support.nodes import REPO, wait_for

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def run_vipmon(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The real CLI, ``python -m app ARGS``, in the repository; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def adc_config(*args: str) -> str:
    """``vipmon adc-config ARGS``'s stdout; fails the test on a non-zero exit."""
    done = run_vipmon("adc-config", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``haproxy -c -f path``: returncode 0 when the config is valid."""
    return subprocess.run(
        [HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False
    )


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A short temporary directory: a UNIX socket path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="vh-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Foreground:
    """A server run in the foreground as our child, stopped by its PID only.

    Subclasses set ``argv`` and ``log_path`` and say when the server is ``ready``.
    """

    name = "server"
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)
        wait_for(self._answers, timeout=10, what=f"{self.name} to serve")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.log()}")
        return self.ready()

    def stop(self) -> None:
        """SIGTERM our PID, wait, SIGKILL if it lingers. Idempotent."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def logs(self) -> list[Path]:
        return [self.log_path]

    def log(self) -> str:
        text = ""
        for path in self.logs():
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")[-3000:]
        return text

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HAProxy(Foreground):
    """One HAProxy process (``haproxy -db -f <cfg>``), fed ``config_text``."""

    name = "haproxy"

    def __init__(self, workdir: Path, config_text: str, backend: str, stats_socket: str) -> None:
        self.cfg = workdir / "haproxy.cfg"
        self.cfg.write_text(config_text)
        self.argv = [HAPROXY, "-db", "-f", str(self.cfg)]
        self.log_path = workdir / "haproxy.log"
        self.backend = backend
        self.stats_socket = stats_socket

    def ready(self) -> bool:
        try:
            self.states()
        except OSError:
            return False
        return True

    def states(self) -> dict[str, ServerState]:
        return servers_state(self.stats_socket, self.backend, timeout=1.0)

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of our backend: server name -> field -> value."""
        lines = command(self.stats_socket, "show stat", timeout=1.0).splitlines()
        fields = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(fields, line.split(","), strict=False)) for line in lines[1:] if line]
        return {
            r["svname"]: r
            for r in rows
            if r.get("pxname") == self.backend and r["svname"] != "BACKEND"
        }

    def up(self) -> list[str]:
        """Names of the servers HAProxy has UP (srv_op_state 2)."""
        return sorted(name for name, s in self.states().items() if s.up)


class _Loop:
    """A daemon thread calling ``step`` every ``interval`` s until stopped or ``max_seconds``."""

    def __init__(self, interval: float, max_seconds: float) -> None:
        self.interval = interval
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.lock = threading.Lock()

    def step(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(int(self.max_seconds / self.interval) + 1):
            if self._stop.is_set() or time.monotonic() >= deadline:
                return
            began = time.monotonic()
            self.step()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def start(self) -> _Loop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass(frozen=True)
class StateSample:
    at: float
    states: tuple[ServerState, ...]

    @property
    def up(self) -> frozenset[str]:
        """Servers operationally UP (srv_op_state 2), drained or not."""
        return frozenset(s.name for s in self.states if s.up)

    def label(self, server: str) -> str:
        """UP, DOWN, NOLB, MAINT or DRAIN."""
        return next(s.label for s in self.states if s.name == server)


class StateSampler(_Loop):
    """Samples what HAProxy shows for each server. Failed reads are counted, not recorded."""

    def __init__(self, proxy: HAProxy, interval: float = 0.02, max_seconds: float = 300) -> None:
        super().__init__(interval, max_seconds)
        self.proxy = proxy
        self.samples: list[StateSample] = []
        self.errors = 0

    def step(self) -> None:
        try:
            states = self.proxy.states()
        except OSError:
            self.errors += 1
            return
        with self.lock:
            self.samples.append(StateSample(time.monotonic(), tuple(states.values())))

    def latest(self) -> frozenset[str] | None:
        """The UP set of the newest sample, or None before the first."""
        with self.lock:
            return self.samples[-1].up if self.samples else None

    def overlaps(self) -> list[StateSample]:
        with self.lock:
            return [s for s in self.samples if len(s.up) > 1]


@dataclass(frozen=True)
class VipAnswer:
    start: float
    end: float
    status: int  # 0: no answer
    node: str
    role: str


class VipClient(_Loop):
    """``GET <url>/role`` every ``interval`` s; records who answered and as what.

    ``keep_alive``: reuse one connection while it lasts (HAProxy's
    ``shutdown-sessions`` cuts it when its server goes DOWN) instead of
    opening a new one for every request.
    """

    def __init__(
        self, url: str, interval: float = 0.02, max_seconds: float = 300, keep_alive: bool = False
    ) -> None:
        super().__init__(interval, max_seconds)
        self.url = url
        self.answers: list[VipAnswer] = []
        self._client = httpx.Client(timeout=0.5)
        self._headers = {} if keep_alive else {"Connection": "close"}

    def step(self) -> None:
        start = time.monotonic()
        try:
            r = self._client.get(self.url + "/role", headers=self._headers)
            info = r.json() if r.status_code == 200 else {}
            answer = VipAnswer(
                start,
                time.monotonic(),
                r.status_code,
                str(info.get("node", "")),
                str(info.get("role", "")),
            )
        except (httpx.HTTPError, ValueError):
            answer = VipAnswer(start, time.monotonic(), 0, "", "")
        with self.lock:
            self.answers.append(answer)

    def stop(self) -> None:
        super().stop()
        self._client.close()

    def served(self) -> list[VipAnswer]:
        with self.lock:
            return [a for a in self.answers if a.status == 200]
