"""Wiring for ``vipmon run``: store, elector thread, HTTP server, signals.

On SIGTERM or SIGINT the node turns negative at once, deletes its leader key
(guarded by its term), revokes its lease, stops serving and exits 0. On SIGHUP
it reads its TLS files and its admin token file again; the role is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from app.checks import CheckRunner
from app.clock import MonotonicClock
from app.election.admin import AdminCommands
from app.election.barrier import ProbeBarrier
from app.election.elector import Elector
from app.election.records import leader_key
from app.election.thread import ElectionThread
from app.errors import FenceError, SettingsError, StoreError
from app.fence.fence import Fence, NoFence
from app.fence.kernel import Libnftables
from app.fence.rules import table_name
from app.hooks import HookRunner
from app.http.admin import AdminToken
from app.http.app import create_app
from app.http.protocol import ProbeProtocol
from app.http.tls import ServerTls, TlsFiles
from app.metrics import Metrics, NodeInfo
from app.probe.agent import AgentCheckServer
from app.probe.tcp_monitor import TcpMonitor
from app.role import Role, Transition
from app.settings import Settings
from app.store.base import Store
from app.systemd import Systemd

log = logging.getLogger("vipmon")

_BACKLOG = 2048  # uvicorn's default


def open_store(settings: Settings) -> Store:
    """The store the settings name. Raises SettingsError if it cannot be set up.

    The embedded store is claimed here, before the node serves: a state directory
    it cannot write, or a file another live host uses, is refused (exit 2), and
    after a reboot the previous boot's leases go (this waits about one TTL).
    """
    timeout = settings.effective_store_timeout
    if settings.backend == "etcd":
        from app.store.etcd import EtcdStore

        password = settings.etcd_password.get_secret_value() if settings.etcd_password else None
        return EtcdStore(
            settings.etcd_endpoints,
            timeout=timeout,
            username=settings.etcd_username,
            password=password,
            ca_file=str(settings.etcd_ca_file) if settings.etcd_ca_file else None,
            cert_file=str(settings.etcd_cert_file) if settings.etcd_cert_file else None,
            key_file=str(settings.etcd_key_file) if settings.etcd_key_file else None,
            confirm_key=leader_key(settings.cluster),
        )
    from app.store.local import LocalStore

    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(
            "state_dir", f"cannot create {settings.state_dir}: {exc.strerror or exc}"
        ) from exc
    store = LocalStore(settings.state_dir / "vipmon.sqlite", timeout=timeout)
    try:
        asyncio.run(store.claim(settings.lease_ttl))
    except StoreError as exc:
        asyncio.run(store.close())
        raise SettingsError("state_dir", str(exc)) from exc
    return store


def open_fence(settings: Settings, clock: MonotonicClock) -> Fence | NoFence:
    """The kernel fence the settings ask for, installed closed. SettingsError if it cannot be:
    a node asked to fence never runs unfenced."""
    if not settings.fence_port:
        return NoFence()
    ports = settings.fenced_ports
    try:
        fence = Fence(
            Libnftables(),
            clock,
            table_name(settings.cluster),
            ports,
            established=settings.fence_established == "reset",
        )
        fence.install()
    except FenceError as exc:
        raise SettingsError(
            "fence_port", f"cannot fence {','.join(map(str, ports))}: {exc}"
        ) from exc
    log.info(
        "fence: table inet %s holds ports %s closed until this node is master (established: %s)",
        table_name(settings.cluster),
        ",".join(map(str, ports)),
        settings.fence_established,
    )
    return fence


def raise_open_file_limit() -> None:
    """Raise the soft open-file limit to the hard one; log a line if that fails.

    Every connection holds a descriptor. systemd starts services with a soft limit
    of 1024, and past it accept() fails with EMFILE: asyncio then stops accepting
    for a second at a time, so a thousand idle connections would silence /monitor.
    The event loop uses epoll, for which descriptors above 1024 are safe.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return
    log.info("open-file limit raised from %d to %d", soft, hard)


def listen_socket(settings: Settings) -> socket.socket:
    """Bind the API socket, or raise SettingsError naming the port."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP, not 0: only then does asyncio set TCP_NODELAY on accepted
    # connections; without it every answer on a kept-alive connection waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.port))
        # Listen now, so that a port taken by anything (our own agent port included)
        # is refused here, with the field named, and not inside the server's start.
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise _listen_error("port", settings.host, settings.port, exc) from exc
    sock.set_inheritable(True)
    return sock


class ThreadCommands:
    """The admin commands, run on the election thread and awaited from the HTTP loop."""

    def __init__(self, election: ElectionThread, commands: AdminCommands) -> None:
        self.election = election
        self.commands = commands

    async def switchover(self, to: str | None) -> dict[str, Any]:
        return await asyncio.wrap_future(self.election.submit(self.commands.switchover(to)))

    async def maintenance(self, enabled: bool, force: bool = False) -> dict[str, Any]:
        command = self.commands.maintenance(enabled, force)
        return await asyncio.wrap_future(self.election.submit(command))

    async def pause(self, paused: bool) -> dict[str, Any]:
        return await asyncio.wrap_future(self.election.submit(self.commands.pause(paused)))

    async def forget(self, node: str) -> dict[str, Any]:
        roster = self.election.elector.roster
        return await asyncio.wrap_future(self.election.submit(roster.forget(node)))


class HookObserver:
    """Feeds role transitions to the hook runner; ignores the rest."""

    def __init__(self, hooks: HookRunner) -> None:
        self.hooks = hooks

    def transition(self, t: Transition, term: int) -> None:
        self.hooks.submit(t.from_role, t.to_role, term, t.reason)

    def renew_latency(self, seconds: float) -> None:
        pass

    def store_error(self, kind: str) -> None:
        pass


class _Server(uvicorn.Server):
    """uvicorn, with signals left to us so that we resign before we stop serving.

    ``on_started`` runs once the sockets serve (systemd's READY=1). The main
    loop wakes once a second (the resolution of the Date header) instead of
    ten times, or at once on :meth:`exit`.
    """

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started
        self._exit: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._exit = asyncio.Event()
        while not await self.on_tick(0):  # tick 0 refreshes the Date header
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 1.0)

    def exit(self) -> None:
        """Stop serving, now rather than at the next tick."""
        self.should_exit = True
        if self._exit is not None:
            self._exit.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(settings: Settings) -> int:
    """Run one node until SIGTERM or SIGINT. Returns the exit status."""
    raise_open_file_limit()
    files = TlsFiles.from_settings(settings)
    tls = ServerTls(files) if files is not None else None
    clock = MonotonicClock()
    fence = open_fence(settings, clock)
    store = open_store(settings)
    sock = listen_socket(settings)
    check = CheckRunner(settings, clock)
    hooks = HookRunner(settings)
    barrier = ProbeBarrier()
    elector = Elector(
        settings, store, clock, check=lambda: check.state, barrier=barrier, fence=fence
    )
    metrics = Metrics(
        elector, clock, NodeInfo.from_settings(settings), check_state=lambda: check.state
    )
    live_window = max(3.0, 2.0 * settings.lease_ttl)
    systemd = Systemd.from_environ(lambda: elector.heartbeat, clock, max_stale=live_window)
    tcp_monitor = (
        TcpMonitor(
            elector, clock, settings.host, settings.tcp_monitor_port, fenced=fence.configured
        )
        if settings.tcp_monitor_port is not None
        else None
    )
    elector.observers = (metrics, HookObserver(hooks), systemd.observer) + (
        (tcp_monitor,) if tcp_monitor is not None else ()
    )
    election = ElectionThread(elector)
    token_value = settings.read_admin_token()
    token = AdminToken(token_value) if token_value else None
    app = create_app(
        elector,
        clock,
        live_window=live_window,
        commands=ThreadCommands(election, AdminCommands(elector)),
        admin_token=token,
        allow_networks=settings.allow_cidr,
        metrics=metrics,
        docs=settings.docs,
        admin_needs_client_cert=files is not None and files.admin_only,
    )
    config = _uvicorn_config(settings, app, tls)
    listen = f"{settings.host}:{settings.port}"
    server = _Server(config, lambda: systemd.ready(f"serving on {listen}"))
    _log_start(settings)
    hooks.start()
    hooks.submit(Role.UNKNOWN, Role.UNKNOWN, 0, "starting")  # drops a VIP left by a crash
    check.start()
    try:
        asyncio.run(
            _serve(server, election, sock, settings, systemd, tls, token, barrier, tcp_monitor)
        )
    finally:
        fence.close()  # the election has ended: the ports stay refused after exit
        systemd.close()
        sock.close()
        check.stop(settings.check_timeout + 1.0)
        hooks.stop(settings.hook_timeout + 1.0)
    return 0


def _uvicorn_config(settings: Settings, app: ASGIApp, tls: ServerTls | None) -> uvicorn.Config:
    """uvicorn with our protocol, no access log and no lifespan, TLS if configured."""
    return uvicorn.Config(
        app,
        http=ProbeProtocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=1,
        backlog=_BACKLOG,
        # X-Forwarded-For is believed only from --trusted-proxy: uvicorn would
        # otherwise trust it from loopback, and a forged header from 127.0.0.1
        # would pass --allow-cidr.
        proxy_headers=bool(settings.trusted_proxy),
        forwarded_allow_ips=[str(net) for net in settings.trusted_proxy],
        ssl_context_factory=(lambda _config, _default: tls.context) if tls else None,
    )


def _log_start(settings: Settings) -> None:
    """The start-up line: who, which store (endpoints or directory), where, which timers."""
    store_at = (
        ",".join(settings.etcd_endpoints) if settings.backend == "etcd" else str(settings.state_dir)
    )
    log.info(
        "node %s starting: backend=%s (%s) cluster=%s listen=%s:%d advertise=%s ttl=%ds "
        "margin=%.2fs",
        settings.node_id,
        settings.backend,
        store_at,
        settings.cluster,
        settings.host,
        settings.port,
        settings.effective_advertise_url,
        settings.lease_ttl,
        settings.lease_margin,
    )


async def _start_agent(settings: Settings, elector: Elector) -> AgentCheckServer | None:
    if settings.agent_port is None:
        return None
    agent = AgentCheckServer(elector, elector.clock, settings.host, settings.agent_port)
    try:
        await agent.start()
    except OSError as exc:
        raise _listen_error("agent_port", settings.host, settings.agent_port, exc) from exc
    return agent


def _listen_error(port_field: str, host: str, port: int, exc: OSError) -> SettingsError:
    """Blame ``host`` for an address that does not resolve or is not ours, else the port."""
    bad_host = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
    return SettingsError(
        "host" if bad_host else port_field,
        f"cannot listen on {host}:{port}: {exc.strerror or exc}",
    )


def _reload(settings: Settings, tls: ServerTls | None, token: AdminToken | None) -> None:
    """SIGHUP: read the TLS files and the admin token file again; keep whatever fails."""
    token_file = settings.admin_token_file
    if token is None or token_file is None:
        token = None  # a token given directly is read at start only
    if tls is None and token is None:
        log.info("SIGHUP received: no TLS configured and no admin token file, nothing to reload")
        return
    if tls is not None:
        log.info("SIGHUP received: reloading TLS")
        tls.reload()
    if token is not None:
        try:
            value = settings.read_admin_token()
        except SettingsError as exc:
            log.error("admin token reload failed, the previous token stays in use: %s", exc)
        else:
            if value is not None:  # always so: the file is set
                token.replace(value)
                log.info("admin token reloaded from %s", token_file)


async def _serve(
    server: _Server,
    election: ElectionThread,
    sock: socket.socket,
    settings: Settings,
    systemd: Systemd,
    tls: ServerTls | None,
    token: AdminToken | None,
    barrier: ProbeBarrier,
    tcp_monitor: TcpMonitor | None = None,
) -> None:
    barrier.bind(asyncio.get_running_loop())  # probes and the agent-check are served here
    agent = await _start_agent(settings, election.elector)
    if tcp_monitor is not None:
        try:
            await tcp_monitor.start()
        except OSError as exc:
            port = tcp_monitor.port
            raise _listen_error("tcp_monitor_port", settings.host, port, exc) from exc
    election.start()
    loop = asyncio.get_running_loop()
    stop_timeout = settings.drain_time + 2.0 * settings.lease_ttl
    stopping: list[asyncio.Task[None]] = []

    async def shut_down(signame: str) -> None:
        log.info("%s received: resigning", signame)
        ended = await loop.run_in_executor(None, election.stop, stop_timeout)
        if not ended:
            log.warning("election did not end in time; the lease will expire on its own")
        server.exit()

    def on_signal(sig: signal.Signals) -> None:
        election.elector.request_stop()
        if stopping:
            server.force_exit = True
            return
        systemd.stopping()
        stopping.append(loop.create_task(shut_down(sig.name)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, _reload, settings, tls, token)
    try:
        await server.serve(sockets=[sock])
    finally:
        if stopping:
            await stopping[0]
        else:
            election.stop(stop_timeout)
        if agent is not None:
            await agent.close()
        if tcp_monitor is not None:
            await tcp_monitor.close()
