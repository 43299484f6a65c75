"""The processes of ``vipmon demo``: nodes and an HAProxy on loopback, stopped by PID.

:class:`Demo` starts ``vipmon run`` children (:class:`Child`) on free loopback ports,
sharing the embedded store in a state directory under its ``workdir`` (or on the store
given), and an HAProxy in front of them configured by the ``adc-config haproxy``
renderer (each node's ``/role`` stands in for the application, so a request through the
VIP says which node it reached). :meth:`Demo.table` is one frame of the demo's display;
:meth:`Demo.restart_dead` restarts killed nodes; :meth:`Demo.stop` stops exactly the
processes it started. A start that does not come up raises :class:`StartError`.

The benchmarks drive a cluster with it too (``bench/adc_failover.py``).
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.adc import haproxy as haproxy_config
from app.adc.model import AdcNode, Endpoint
from app.adc.runtime import ServerState, servers_state
from app.adc.timers import HaproxyTimers, NodeTiming, assess

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """One process the demo started; stopped by its PID only."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    died_at: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment, on top of ours without its ``VIPMON_*`` variables."""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIPMON_")} | self.env
        with self.log.open("ab") as out:
            # A session of its own: a Ctrl-C in the terminal reaches the demo only.
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=out, env=env, start_new_session=True
            )
        self.died_at = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def reap(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic), then SIGKILL and wait."""
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""


@dataclass
class Demo:
    """The cluster, the HAProxy and what the table shows."""

    workdir: Path
    nodes: list[Child] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    haproxy: Child | None = None
    vip_port: int = 0
    stats_socket: str = ""
    backend: str = ""

    def start_nodes(
        self,
        count: int,
        store_args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``count`` nodes on the embedded store, or on ``store_args`` when given
        (``--backend etcd --etcd-endpoints ...``), with ``env`` added to their environment."""
        state = self.workdir / "state"
        store = (
            list(store_args)
            if store_args is not None
            else ["--backend", "local", "--state-dir", str(state)]
        )
        for i in range(1, count + 1):
            name, port = f"n{i}", free_port()
            argv = [
                sys.executable,
                "-m",
                "app",
                "run",
                "--node-id",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--advertise-url",
                f"http://127.0.0.1:{port}",
                *store,
            ]
            child = Child(name, argv, self.workdir / f"{name}.log", env=dict(env or {}))
            child.start()
            self.nodes.append(child)
            self.ports[name] = port
        for child in self.nodes:
            wait_until(
                functools.partial(_answers, self.ports[child.name], child), f"{child.name} to serve"
            )

    def start_haproxy(self, binary: str, timers: HaproxyTimers | None = None) -> None:
        """HAProxy configured by the ``adc-config haproxy`` renderer (shipped timers by default)."""
        self.vip_port = free_port()
        self.stats_socket = str(self.workdir / "haproxy.sock")
        state_file = str(self.workdir / "servers.state")
        nodes = tuple(
            AdcNode(c.name, Endpoint("127.0.0.1", self.ports[c.name]), self.ports[c.name])
            for c in self.nodes
        )
        config = haproxy_config.HaproxyConfig(
            vip=Endpoint("127.0.0.1", self.vip_port),
            nodes=nodes,
            timers=timers or HaproxyTimers(),
            stats_socket=self.stats_socket,
            state_file=state_file,
        )
        self.backend = config.backend
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(
            haproxy_config.render(config, assess(config.timers, NodeTiming()), "vipmon demo")
        )
        Path(state_file).write_text(
            haproxy_config.render_state(config.backend, nodes, agent=False, command="vipmon demo")
        )
        self.haproxy = Child(
            "haproxy", [binary, "-db", "-f", str(cfg)], self.workdir / "haproxy.log"
        )
        self.haproxy.start()
        wait_until(self._haproxy_answers, "HAProxy's stats socket")

    def _haproxy_answers(self) -> bool:
        assert self.haproxy is not None
        if not self.haproxy.alive():
            raise StartError(f"haproxy exited:\n{self.haproxy.tail()}")
        try:
            servers_state(self.stats_socket, self.backend, timeout=0.5)
        except OSError:
            return False
        return True

    def restart_dead(self, after: float) -> list[str]:
        """Notice dead nodes and restart them ``after`` s later; returns the event lines."""
        events = []
        now = time.monotonic()
        stamp = time.strftime("%H:%M:%S")
        for child in self.nodes:
            if child.alive() or child.proc is None:
                continue
            if child.died_at is None:
                child.died_at = now
                code = child.proc.returncode
                how = f"signal {-code}" if code < 0 else f"status {code}"
                events.append(
                    f"{stamp} {child.name} (pid {child.pid}) exited with {how}"
                    + (f"; restarting it in {after:g} s" if after > 0 else "")
                )
            elif after > 0 and now - child.died_at >= after:
                child.start()
                events.append(f"{stamp} {child.name} restarted as pid {child.pid}")
        return events

    def table(self, client: httpx.Client) -> str:
        haproxy_view: dict[str, ServerState] = {}
        if self.haproxy is not None:
            try:
                haproxy_view = servers_state(self.stats_socket, self.backend, timeout=0.5)
            except OSError:
                haproxy_view = {}
        rows = [("NODE", "PID", "PORT", "ROLE", "TERM", "HAPROXY")]
        master = None
        for child in self.nodes:
            role, term = role_of(client, self.ports[child.name]) if child.alive() else ("dead", "")
            if role == "MASTER":
                master = child
            seen = haproxy_view.get(child.name)
            rows.append(
                (
                    child.name,
                    str(child.pid) if child.alive() else "-",
                    str(self.ports[child.name]),
                    role,
                    term,
                    seen.label if seen else "-",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"vipmon demo  {time.strftime('%H:%M:%S')}  (Ctrl-C stops it all)"]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        if self.haproxy is not None:
            landed = _through_vip(client, self.vip_port)
            if not any(s.up for s in haproxy_view.values()):
                landed += "; HAProxy has no server UP"
            lines.append(
                f"VIP 127.0.0.1:{self.vip_port} (HAProxy pid {self.haproxy.pid}) -> {landed}"
            )
        if master is not None:
            lines.append(f"Fail the master over:  kill -9 {master.pid}   ({master.name})")
        else:
            lines.append("No master right now: the election is under way.")
        return "\n".join(lines)

    def children(self) -> list[Child]:
        return [*self.nodes, *([self.haproxy] if self.haproxy else [])]

    def stop(self) -> list[int]:
        """Stop every child by PID: SIGTERM, bounded wait, then SIGKILL. Returns the PIDs."""
        pids = [c.pid for c in self.children() if c.alive()]
        for child in self.children():
            child.stop()
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in self.children():
            child.reap(deadline)
        return pids


class StartError(Exception):
    """The cluster or HAProxy did not come up."""


def _answers(port: int, child: Child) -> bool:
    if not child.alive():
        raise StartError(f"{child.name} exited:\n{child.tail()}")
    try:
        httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=0.5)
    except httpx.HTTPError:
        return False
    return True


def wait_until(
    ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT, interval: float = 0.05
) -> None:
    """Poll ``ready`` every ``interval`` s; StartError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(interval)
    raise StartError(f"timed out after {timeout:g} s waiting for {what}")


def role_of(client: httpx.Client, port: int) -> tuple[str, str]:
    """(role, term) from a node's ``/role``; ("no answer", "") when it does not answer."""
    try:
        info = client.get(f"http://127.0.0.1:{port}/role").json()
    except (httpx.HTTPError, ValueError):
        return "no answer", ""
    return str(info.get("role", "?")), str(info.get("term", ""))


def _through_vip(client: httpx.Client, port: int) -> str:
    try:
        info = client.get(f"http://127.0.0.1:{port}/role").json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"no answer ({type(exc).__name__})"
    return f"{info.get('node')} ({info.get('role')})"
