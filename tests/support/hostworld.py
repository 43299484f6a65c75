"""Real hosts for ``vipmon bootstrap`` bundles: one network namespace per host.

Built on :mod:`tests.support.netns` (the fence tests' world): each host of a
``vipmon bootstrap`` output is a :class:`~tests.support.netns.Host` at its own
address 10.77.0.<n>, and ``lb`` (10.77.0.100) is the admin host and the load
balancer: it runs HAProxy with the bundle's ``adc/haproxy.cfg`` and the admin
commands (``vipmon bootstrap auth``, ``etcdctl``).

**Paths.** Each host installs its bundle with the bundle's own ``install.sh``
under ``PREFIX=<tmp>/hosts/<host>`` (files only). Every process of the host then
runs in the host's one private mount namespace (made by ``unshare --mount
--propagation private`` inside its network namespace, held by a ``sleep``, and
entered with ``nsenter --mount``) where an overlayfs covers ``/etc``,
``/var/lib``, ``/opt`` and ``/run``: the real directory below, read-only in
effect, and the host's root above, which takes every write. So the installed
configs name the real paths (``/etc/vipmon/vipmon.toml``, ``/var/lib/vipmon-etcd``)
and the unit's ``ExecStart`` line runs as written; nothing reaches the real
``/etc``, ``/var/lib``, ``/opt`` or ``/run``. ``/opt/vipmon`` in each host is a
symlink to this checkout's venv (as if ``pip install vipmon`` had put it there);
etcd is Debian's ``/usr/bin/etcd``.

**Units without systemd.** :meth:`BundleHost.boot` reads each installed unit's
``ExecStart=``, ``Environment=`` and ``StateDirectory=`` and starts the line,
etcd's unit first (the vipmon unit is ``After=`` it). Processes are stopped by
PID (``Host.stop_all``), and every namespace goes at the end, also on failure.

**Faults** (all on one host, all undone by :meth:`HostWorld.heal`): ``link``
(its eth0 down), ``oneway`` (every other cluster host drops what it sends:
nftables in the receivers' namespaces), ``poweroff`` (SIGKILL to every process
of the host; healing boots it again from the same disk), ``freeze`` (SIGSTOP to
all of them; healing sends SIGCONT).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.netns import PLAIN_APP, Host, World
from tests.support.nodes import wait_for
from tests.support.probe import Probe, Prober

VIPMON = Path(sys.executable).with_name("vipmon")
COVERED = ("etc", "var/lib", "opt", "run")  # the overlays of every host
LB_INDEX = 100
VIP = f"10.77.0.{LB_INDEX}:80"
APP_PORT = 8080
API_PORT = 8700
FAULTS = ("link", "oneway", "poweroff", "freeze")


def bootstrap(out: Path, hosts: Sequence[tuple[str, int]], witness: tuple[str, int] | None) -> str:
    """Run ``vipmon bootstrap`` for hosts at 10.77.0.<n> with HAProxy; the command typed."""
    argv = [str(VIPMON), "bootstrap", "--cluster", "prod"]
    for name, index in hosts:
        argv += ["--host", f"{name}=10.77.0.{index}"]
    if witness:
        argv += ["--witness", f"{witness[0]}=10.77.0.{witness[1]}"]
    argv += ["--out", str(out), "--adc", "haproxy", "--vip", VIP, "--app-port", str(APP_PORT)]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    return shlex.join(["vipmon", *argv[1:]])


def _unit(path: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """A unit's ExecStart argv, Environment= pairs and StateDirectory= names."""
    argv: list[str] = []
    env: dict[str, str] = {}
    states: list[str] = []
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            argv = shlex.split(value)
        elif key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
        elif key == "StateDirectory":
            states += value.split()
    if not argv:
        raise AssertionError(f"{path}: no ExecStart")
    return argv, env, states


@dataclass
class BundleHost:
    """A host of the world with its own root: the overlays' upper layer."""

    host: Host
    root: Path
    logs: Path
    units: list[str] = field(default_factory=list)
    holder: subprocess.Popen[bytes] | None = None
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def addr(self) -> str:
        return self.host.addr

    def wrap(self, argv: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        """``argv`` in this host's mount namespace (made at the first call after a boot)."""
        if self.holder is None or self.holder.poll() is not None:
            self.holder = self._mount_namespace()
        sets = [f"{k}={v}" for k, v in (env or {}).items()]
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--", "env", *sets, *argv]

    def _mount_namespace(self) -> subprocess.Popen[bytes]:
        """A process that holds the host's private mounts: its overlays over COVERED.

        One per host, as a machine has one root: every process of the host enters it,
        so no two overlays ever share an upper directory.
        """
        mounts = "; ".join(
            f"mount -t overlay overlay -o lowerdir=/{d},upperdir={self.root}/{d},"
            f"workdir={self.root}/.work/{d} /{d}"
            for d in COVERED
        )
        script = f"set -e; {mounts}; exec sleep infinity"
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        proc = self.host.popen(argv, log=self.logs / f"{self.name}-mounts.log")
        cmdline = Path(f"/proc/{proc.pid}/cmdline")

        def mounted() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{self.name}: the mounts failed, see {self.name}-mounts.log")
            with contextlib.suppress(OSError):
                return cmdline.read_bytes().startswith(b"sleep")
            return False

        wait_for(mounted, timeout=10, interval=0.01, what=f"{self.name}'s mounts")
        return proc

    def prepare(self) -> None:
        for d in COVERED:
            (self.root / d).mkdir(parents=True, exist_ok=True)
            (self.root / ".work" / d).mkdir(parents=True, exist_ok=True)
        opt = self.root / "opt/vipmon/bin"
        opt.mkdir(parents=True, exist_ok=True)
        if not (opt / "vipmon").exists():
            (opt / "vipmon").symlink_to(VIPMON)

    def install(self, bundle: Path) -> None:
        """The bundle's ``install.sh`` under this host's root (files only)."""
        self.prepare()
        subprocess.run(
            ["sh", str(bundle / "install.sh")],
            env={"PREFIX": str(self.root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        system = self.root / "etc/systemd/system"
        self.units = [u for u in ("vipmon-etcd.service", "vipmon.service") if (system / u).exists()]

    def start_unit(self, unit: str) -> subprocess.Popen[bytes]:
        argv, env, states = _unit(self.root / "etc/systemd/system" / unit)
        for state in states:
            (self.root / "var/lib" / state).mkdir(mode=0o750, exist_ok=True)
        log = self.logs / f"{self.name}-{unit}.log"
        self.running[unit] = self.host.popen(self.wrap(argv, env), log=log)
        return self.running[unit]

    def boot(self, units: Sequence[str] | None = None, app: bool = True) -> None:
        """Start the units' ExecStart lines (etcd first) and the application."""
        for unit in units if units is not None else self.units:
            self.start_unit(unit)
        if app and "vipmon.service" in self.units:
            log = self.logs / f"{self.name}-app.log"
            self.host.popen([sys.executable, "-c", PLAIN_APP, self.name, str(APP_PORT)], log=log)

    def poweroff(self) -> None:
        self.host.signal_all(signal.SIGKILL)
        for proc in self.host.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


class HostWorld:
    """Bundled hosts and the load balancer ``lb`` in one :class:`World`."""

    def __init__(self, out: Path, tmp: Path, names: Sequence[str]) -> None:
        self.out = out
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.world = World(names)
        self.hosts: dict[str, BundleHost] = {}
        try:
            for name in names:
                self._adopt(self.world[name])
            self.lb = self._adopt(self.world.add_host("lb", LB_INDEX))
        except BaseException:
            self.world.close()
            raise
        self.faulted: dict[str, str] = {}

    def _adopt(self, host: Host) -> BundleHost:
        bh = BundleHost(host, self.tmp / "hosts" / host.name, self.logs)
        bh.prepare()
        self.hosts[host.name] = bh
        return bh

    def add(self, name: str, index: int) -> BundleHost:
        """A new bare host cabled to the bridge (for ``add-host``)."""
        return self._adopt(self.world.add_host(name, index))

    def __getitem__(self, name: str) -> BundleHost:
        return self.hosts[name]

    @property
    def nodes(self) -> list[BundleHost]:
        return [h for h in self.hosts.values() if "vipmon.service" in h.units]

    @property
    def members(self) -> list[BundleHost]:
        return [h for h in self.hosts.values() if "vipmon-etcd.service" in h.units]

    def install_all(self) -> None:
        for name, bh in self.hosts.items():
            if (self.out / name / "install.sh").exists():
                bh.install(self.out / name)

    def boot_all(self) -> None:
        """etcd on every member host, then vipmon and the application on every node."""
        for bh in self.members:
            bh.boot(["vipmon-etcd.service"], app=False)
        for bh in self.nodes:
            bh.boot(["vipmon.service"])

    def start_lb(self) -> None:
        """HAProxy in ``lb`` with the bundle's ADC files where its config names them."""
        adc, root = self.out / "adc", self.lb.root
        (root / "etc/haproxy").mkdir(parents=True, exist_ok=True)
        (root / "var/lib/haproxy").mkdir(parents=True, exist_ok=True)
        (root / "run/haproxy").mkdir(parents=True, exist_ok=True)
        (root / "etc/haproxy/vipmon-ca.crt").write_bytes((adc / "ca.crt").read_bytes())
        state = (adc / "vipmon-servers.state").read_bytes()
        (root / "var/lib/haproxy/vipmon-servers.state").write_bytes(state)
        (root / "etc/haproxy/vipmon.cfg").write_bytes((adc / "haproxy.cfg").read_bytes())
        argv = ["/usr/sbin/haproxy", "-db", "-f", "/etc/haproxy/vipmon.cfg"]
        self.haproxy = self.lb.host.popen(self.lb.wrap(argv), log=self.logs / "haproxy.log")

    def reload_lb(self) -> None:
        """HAProxy again with ``adc/`` as it is now (a restart: every server starts DOWN)."""
        self.haproxy.terminate()
        self.haproxy.wait(10)
        self.start_lb()

    def admin(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``vipmon`` run on the admin host (``lb``), as the README types it."""
        return self.lb.host.run([str(VIPMON), *args], timeout=timeout)

    # -- what the load balancer's namespace sees ---------------------------------------

    def ca(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.out / "admin/ca.crt"))

    def prober(self) -> Prober:
        """Every node's ``/monitor`` over its real address, sampled from ``lb``."""
        urls = [(bh.name, f"https://{bh.addr}:{API_PORT}") for bh in self.nodes]
        return Prober(urls, interval=0.05, verify=self.ca(), enter=self.lb.host.entered)

    def vip(self, timeout: float = 0.5) -> str:
        """What the VIP answers now (the application's host name), or ``""``."""
        with self.lb.host.entered(), httpx.Client(timeout=timeout, trust_env=False) as c:
            try:
                return c.get(f"http://{VIP}/").text
            except httpx.HTTPError:
                return ""

    def etcdctl(
        self, *args: str, endpoints: Sequence[str] = (), root: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Debian's ``etcdctl`` from ``lb`` with the admin certificate (and root's password)."""
        admin = self.out / "admin"
        urls = endpoints or [f"https://{bh.addr}:2379" for bh in self.members]
        argv = ["etcdctl", f"--endpoints={','.join(urls)}", f"--cacert={admin}/ca.crt",
                f"--cert={admin}/admin.crt", f"--key={admin}/admin.key",
                "--dial-timeout=1s", "--command-timeout=3s"]  # fmt: skip
        if root:
            password = (admin / "etcd-root.password").read_text().strip()
            argv += ["--user", "root", "--password", password]
        return self.lb.host.run([*argv, *args], timeout=15)

    def etcd_status(self) -> tuple[str, set[str]]:
        """etcd's leader (``""`` if the members disagree) and the members that answer."""
        ids: dict[int, str] = {}
        leaders: set[int] = set()
        for bh in self.members:
            url = f"https://{bh.addr}:2379"
            done = self.etcdctl("endpoint", "status", "-w", "json", endpoints=[url])
            if done.returncode != 0:
                continue
            status = json.loads(done.stdout)[0]["Status"]
            ids[int(status["header"]["member_id"])] = bh.name
            leaders.add(int(status.get("leader", 0)))  # 0 (left out): no leader known
        leader = ids.get(leaders.pop(), "") if len(leaders) == 1 else ""
        return leader, set(ids.values())

    def move_etcd_leader(self, to: str) -> None:
        """``etcdctl move-leader`` to the member on host ``to``, and wait until it leads."""
        listed = self.etcdctl("member", "list", "-w", "json", root=True)
        assert listed.returncode == 0, listed.stderr
        ids = {m["name"]: m["ID"] for m in json.loads(listed.stdout)["members"]}
        leader = self.etcd_leader()
        url = f"https://{self.hosts[leader].addr}:2379"
        moved = self.etcdctl("move-leader", f"{ids[to]:x}", endpoints=[url], root=True)
        assert moved.returncode == 0, moved.stderr
        wait_for(
            lambda: self.etcd_status()[0] == to,
            timeout=20,
            interval=0.1,
            what=f"etcd's leader on {to}",
        )

    def etcd_leader(self, timeout: float = 20) -> str:
        """The host of etcd's leader, once every answering member names the same one."""
        found = ""

        def known() -> bool:
            nonlocal found
            found = self.etcd_status()[0]
            return bool(found)

        wait_for(known, timeout=timeout, interval=0.1, what="an etcd leader")
        return found

    # -- faults -------------------------------------------------------------------------

    def inject(self, kind: str, name: str) -> None:
        """Fault ``kind`` on host ``name`` until :meth:`heal`."""
        bh = self.hosts[name]
        if kind == "link":
            bh.host.link(False)
        elif kind == "oneway":
            for other in self.hosts.values():
                if other is not bh and other is not self.lb and other.units:
                    self.world.drop(name, other.name)
        elif kind == "poweroff":
            bh.poweroff()
        elif kind == "freeze":
            bh.host.signal_all(signal.SIGSTOP)
        else:
            raise ValueError(kind)
        self.faulted[name] = kind

    def heal(self, name: str) -> None:
        kind = self.faulted.pop(name)
        bh = self.hosts[name]
        if kind == "link":
            bh.host.link(True)
        elif kind == "oneway":
            for other in self.hosts.values():
                if other is not bh and other is not self.lb and other.units:
                    self.world.heal(other.name)
        elif kind == "poweroff":
            bh.boot()
        elif kind == "freeze":
            bh.host.signal_all(signal.SIGCONT)

    def close(self) -> None:
        for bh in self.hosts.values():
            bh.host.signal_all(signal.SIGCONT)
        self.world.close()

    def __enter__(self) -> HostWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def masters(records: Sequence[Probe], after: float) -> set[str]:
    """The nodes that answered 200 in probes begun after ``after``."""
    return {p.node for p in records if p.status == 200 and p.start > after}


@contextlib.contextmanager
def running(world: HostWorld) -> Iterator[Prober]:
    """The prober from ``lb`` for the block."""
    prober = world.prober().start()
    try:
        yield prober
    finally:
        prober.stop()
