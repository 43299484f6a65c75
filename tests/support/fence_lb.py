"""A fenced cluster behind a real load balancer, all in network namespaces, and its judge.

The world (:mod:`tests.support.netns`): three node hosts ``n1..n3`` each run
:data:`~tests.support.netns.PLAIN_APP` on port 8080 (it answers its host's name and
knows nothing of vipmon) and ``vipmon run`` on the embedded store (one state
directory: the namespaces share the filesystem), with ``--fence-port 8080`` unless
the scenario runs unfenced; an ``lb`` host runs nginx, HAProxy or Caddy with the
config ``vipmon adc-config ... --fenced`` prints, on the VIP ``10.77.0.4:80``; a
``client`` host runs :data:`CLIENT`, which sends about 100 requests/s through the VIP
(half on new connections, half on one kept-alive connection) and writes one JSON
line per request: wall-clock send and receive times, the answering node or the error.

:func:`run_faults` drives a switchover, a SIGTERM, a SIGKILL and a SIGSTOP of the
master's vipmon (its application keeps running), waiting for a new master between
them, every wait bounded. :func:`judge` then decides, by the order of events in the
cluster's own ``/history`` and not by timers, whether any request was served by a
node that did not hold the master term at any instant of the request.

Nothing here sends traffic from the host's own namespace; processes are stopped by
PID and the namespaces go with the :class:`~tests.support.netns.World`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support import nginx as ngx
from tests.support.haproxy import HAPROXY, adc_config
from tests.support.netns import PLAIN_APP, Host, World
from tests.support.nodes import REPO, wait_for

NODES = ("n1", "n2", "n3")
HOSTS = (*NODES, "lb", "client")  # lb is 10.77.0.4, client 10.77.0.5
APP, API, VIP_PORT = 8080, 8700, 80
TOKEN = "fence-lb-admin-token-0123456789"
TTL = 2.0
CADDY = shutil.which("caddy") or "/usr/bin/caddy"
LBS = ("nginx", "haproxy", "haproxy-fast", "haproxy-stock", "caddy")
"""haproxy: ``adc-config``'s default profile (conservative); haproxy-fast: ``--profile
fast``; haproxy-stock: HAProxy's own defaults (inter 2s, rise 2, fall 3), which can
hold two servers UP."""
_HAPROXY_TIMERS = {
    "haproxy": [],
    "haproxy-fast": ["--profile", "fast"],
    "haproxy-stock": [
        *("--interval", "2", "--fastinter", "2", "--downinter", "2", "--rise", "2"),
        *("--fall", "3", "--timeout", "2", "--connect-timeout", "5"),
    ],
}

#: The load: argv: VIP host, port, output file, stop file, max seconds, period (s).
#: Two threads, one on new connections, one on a kept-alive connection (reopened
#: after an error), each one request per period on a schedule; one JSON line per
#: request: t0/t1 (time.time() before sending, after the answer or error), conn,
#: status (0: no answer), node (the body of a 200), error.
CLIENT = r"""
import http.client, json, os, sys, threading, time
host, port, out, stop, limit, period = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
lock = threading.Lock()
sink = open(out, "a")
ends = time.monotonic() + limit

def load(kept):
    conn = None
    start = time.monotonic()
    for i in range(int(limit / period) + 1):
        if time.monotonic() > ends or os.path.exists(stop):
            break
        rec = {"conn": "keep" if kept else "new", "status": 0, "node": "", "error": ""}
        rec["t0"] = time.time()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=6)
            conn.request("GET", "/", headers={} if kept else {"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read()
            rec["status"] = resp.status
            if resp.status == 200:
                rec["node"] = body.decode(errors="replace")[:20]
            if not kept or resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            rec["error"] = type(exc).__name__
            if conn is not None:
                conn.close()
            conn = None
        rec["t1"] = time.time()
        with lock:
            sink.write(json.dumps(rec) + "\n")
            sink.flush()
        time.sleep(max(0.0, start + (i + 1) * period - time.monotonic()))
    if conn is not None:
        conn.close()

threads = [threading.Thread(target=load, args=(k,)) for k in (False, True)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


class Nodes:
    """The three nodes: their applications, their vipmon processes, our view of them."""

    def __init__(self, world: World, tmp: Path, fenced: bool = True, drain: float = 0.3) -> None:
        self.world, self.tmp, self.fenced, self.drain = world, tmp, fenced, drain
        self.client = world["client"]
        self.vipmon: dict[str, subprocess.Popen[bytes]] = {}
        for name in NODES:
            world[name].popen([sys.executable, "-c", PLAIN_APP, name, str(APP)])
        for name in NODES:
            self.start(name)

    def start(self, name: str) -> None:
        host = self.world[name]
        fence = ["--fence-port", str(APP)] if self.fenced else []
        argv = [
            sys.executable, "-m", "app", "run", "--node-id", name, "--host", host.addr,
            "--port", str(API), "--backend", "local", "--state-dir", str(self.tmp / "state"),
            "--lease-ttl", str(TTL), "--drain-time", str(self.drain), *fence,
        ]  # fmt: skip
        env = {**os.environ, "VIPMON_ADMIN_TOKEN": TOKEN}
        self.vipmon[name] = host.popen(argv, log=self.tmp / f"{name}.log", cwd=REPO, env=env)

    def signal(self, name: str, sig: signal.Signals) -> float:
        """Send ``sig`` to ``name``'s vipmon; the wall-clock instant just before."""
        at = time.time()
        os.kill(self.vipmon[name].pid, sig)
        return at

    def _get(self, name: str, path: str, timeout: float = 0.5) -> tuple[int, bytes] | None:
        with self.client.entered():
            conn = http.client.HTTPConnection(self.world[name].addr, API, timeout=timeout)
            try:
                conn.request("GET", path)
                reply = conn.getresponse()
                return reply.status, reply.read()
            except (OSError, http.client.HTTPException):
                return None
            finally:
                conn.close()

    def monitor(self, name: str) -> int | None:
        """``name``'s /monitor status from the client host, None if it does not answer."""
        got = self._get(name, "/monitor")
        return got[0] if got else None

    def master(self, among: tuple[str, ...] = NODES) -> str | None:
        found = [n for n in among if self.monitor(n) == 200]
        return found[0] if len(found) == 1 else None

    def wait_master(self, among: tuple[str, ...] = NODES, timeout: float = 20) -> str:
        found = wait_for(lambda: self.master(among), timeout=timeout, what=f"a master in {among}")
        return str(found)

    def wait_serving(self, names: tuple[str, ...] = NODES, timeout: float = 30) -> None:
        """Until every one of ``names`` answers /monitor (its fence is in by then)."""
        wait_for(
            lambda: all(self.monitor(n) is not None for n in names),
            timeout=timeout,
            what=f"{names} to answer /monitor",
        )

    def switchover(self, master: str) -> dict[str, Any]:
        """POST /admin/switchover to ``master``, to any other node; its JSON answer."""
        with self.client.entered():
            conn = http.client.HTTPConnection(self.world[master].addr, API, timeout=30)
            try:
                conn.request(
                    "POST",
                    "/admin/switchover",
                    body=json.dumps({"to": None}),
                    headers={
                        "Authorization": f"Bearer {TOKEN}",
                        "Content-Type": "application/json",
                    },
                )
                reply = conn.getresponse()
                text = reply.read()
            finally:
                conn.close()
        assert reply.status == 200, f"switchover: HTTP {reply.status} {text[:300]!r}"
        return json.loads(text)  # type: ignore[no-any-return]

    def history(self, name: str) -> list[dict[str, Any]]:
        got = self._get(name, "/history?limit=1000", timeout=2)
        assert got is not None and got[0] == 200, f"/history of {name}: {got}"
        return json.loads(got[1])["terms"]  # type: ignore[no-any-return]

    def logs(self) -> str:
        text = ""
        for name in NODES:
            with contextlib.suppress(OSError):
                tail = (self.tmp / f"{name}.log").read_text(errors="replace")[-2500:]
                text += f"--- {name}\n{tail}\n"
        return text


def lb_config(lb: str, world: World, workdir: Path) -> str:
    """The config ``vipmon adc-config ... --fenced`` prints for ``lb`` on the world."""
    nodes = [f"--node={n}={world[n].addr}:{APP}" for n in NODES]
    vip = f"--vip={world['lb'].addr}:{VIP_PORT}"
    if lb == "nginx":
        return adc_config("nginx", vip, *nodes, "--fenced")
    if lb == "caddy":
        text = adc_config("caddy", vip, *nodes, "--fenced")
        return "{\n\tadmin off\n}\n\n" + text  # no admin endpoint
    assert lb.startswith("haproxy"), lb
    args = [vip, *[f"{a}/{API}" for a in nodes], "--fenced"]
    args += ["--stats-socket", str(workdir / "s.sock"), "--state-file", str(workdir / "seed")]
    args += _HAPROXY_TIMERS[lb]
    (workdir / "seed").write_text(adc_config("haproxy-state", *args))
    return adc_config("haproxy", *args)


def start_lb(lb: str, world: World, workdir: Path) -> subprocess.Popen[bytes]:
    """Run ``lb`` in the lb host on its generated config, in the foreground, our child."""
    host: Host = world["lb"]
    text = lb_config(lb, world, workdir)
    log = workdir / f"{lb}.log"
    if lb == "nginx":
        conf = ngx.wrap(workdir, text)
        argv = [ngx.NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
        return host.popen(argv, log=log)
    if lb == "caddy":
        path = workdir / "Caddyfile"
        path.write_text(text)
        home = {k: str(workdir) for k in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")}
        argv = [CADDY, "run", "--config", str(path), "--adapter", "caddyfile"]
        return host.popen(argv, log=log, env={**os.environ, **home})
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(text)
    return host.popen([HAPROXY, "-db", "-f", str(cfg)], log=log)


class Load:
    """:data:`CLIENT` in the client host, started and stopped by the test."""

    def __init__(self, world: World, workdir: Path, limit: float = 300) -> None:
        self.out, self.stop_file = workdir / "load.jsonl", workdir / "load.stop"
        argv = [sys.executable, "-c", CLIENT, world["lb"].addr, str(VIP_PORT), str(self.out),
                str(self.stop_file), str(limit), "0.02"]  # fmt: skip
        self.proc = world["client"].popen(argv, log=workdir / "load.log")
        self._offset = 0
        self._records: list[dict[str, Any]] = []

    def records(self) -> list[dict[str, Any]]:
        """Every request written so far (the file is read on from where the last call left)."""
        if self.out.exists():
            with self.out.open("rb") as f:
                f.seek(self._offset)
                for line in f:
                    if not line.endswith(b"\n"):
                        break  # a line being written: read it next time
                    self._offset += len(line)
                    self._records.append(json.loads(line))
        return self._records

    def served_since(self, since: float) -> set[str]:
        return {r["node"] for r in self.records() if r["status"] == 200 and r["t0"] >= since}

    def stop(self) -> list[dict[str, Any]]:
        self.stop_file.touch()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return self.records()


@dataclass
class Fault:
    """One fault: what, on whom, when (wall clock), and who was master after it."""

    kind: str
    old: str
    at: float
    new: str


def run_faults(
    nodes: Nodes, load: Load, kinds: tuple[str, ...], pause: float = 1.0, timeout: float = 30
) -> list[Fault]:
    """Each of ``kinds`` (switchover, sigterm, sigkill, sigstop) in turn on the master.

    After each: a new master, the stopped vipmon restarted (or thawed, after more
    than a TTL), and a request through the VIP served by the new master; then
    ``pause`` seconds of load before the next. Every wait is bounded by ``timeout``.
    """
    done = []
    for kind in kinds:
        nodes.wait_serving(timeout=timeout)
        old = nodes.wait_master(timeout=timeout)
        time.sleep(pause)
        others = tuple(n for n in NODES if n != old)
        proc = nodes.vipmon[old]
        if kind == "switchover":
            at = time.time()
            nodes.switchover(old)
        elif kind == "sigstop":
            at = nodes.signal(old, signal.SIGSTOP)
        else:
            at = nodes.signal(old, signal.SIGTERM if kind == "sigterm" else signal.SIGKILL)
        new = nodes.wait_master(others, timeout=timeout)
        if kind == "sigstop":
            # Stopped for longer than the TTL: the new master alone shows it expired.
            time.sleep(max(0.0, at + TTL + 0.5 - time.time()))
            os.kill(proc.pid, signal.SIGCONT)
            wait_for(
                lambda o=old: nodes.monitor(o) not in (None, 200),
                timeout=20,
                what=f"{old} negative",
            )
        elif kind in ("sigterm", "sigkill"):
            proc.wait(timeout)
            nodes.start(old)
        wait_for(
            lambda n=new, t=at: n in load.served_since(t),
            timeout=timeout,
            what=f"a request through the VIP served by {new} after the {kind}",
        )
        done.append(Fault(kind, old, at, new))
    nodes.wait_serving(timeout=timeout)
    return done


@dataclass
class Verdict:
    """The judge's account of one run's requests."""

    total: int = 0
    served: Counter[str] = field(default_factory=Counter)  # node -> requests it served
    errors: Counter[str] = field(default_factory=Counter)  # kind -> count
    wrong: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.most_common()) or "none"
        return (
            f"{len(self.wrong)} served off-term / {self.total} requests "
            f"({sum(self.served.values())} served: {dict(sorted(self.served.items()))}); "
            f"errors {sum(self.errors.values())} ({errors})"
        )


def holder_intervals(terms: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Term T of node X holds from began(T) to began(the next term), by term order.

    Every term must carry ``began``: a term without it would let the term before
    stretch over it, so it fails the run rather than weaken the judge.
    """
    ordered = sorted(terms, key=lambda t: t["term"])
    missing = [t["term"] for t in ordered if t.get("began") is None]
    assert not missing, f"terms without a 'began': {missing}"
    starts = [datetime.fromisoformat(t["began"]).timestamp() for t in ordered]
    ends = [*starts[1:], float("inf")]
    held: dict[str, list[tuple[float, float]]] = {}
    for term, began, ended in zip(ordered, starts, ends, strict=True):
        held.setdefault(term["node"], []).append((began, ended))
    return held


def judge(records: list[dict[str, Any]], terms: list[dict[str, Any]]) -> Verdict:
    """A request answered by X over [t0, t1] is correct iff [t0, t1] meets one of X's
    holder intervals. Errors (no answer, a reset, a 502) are counted, not judged."""
    held = holder_intervals(terms)
    verdict = Verdict(total=len(records))
    for r in records:
        if r["status"] != 200 or r["node"] not in NODES:
            verdict.errors[r["error"] or f"HTTP {r['status']}"] += 1
            continue
        verdict.served[r["node"]] += 1
        if not any(r["t0"] < end and r["t1"] >= began for began, end in held.get(r["node"], [])):
            verdict.wrong.append(r)
    return verdict


def settled_history(nodes: Nodes, faults: list[Fault]) -> list[dict[str, Any]]:
    """The history from the current master once its own term is in it with ``began``."""

    def ready() -> list[dict[str, Any]] | None:
        master = nodes.master()
        if master is None:
            return None
        terms = nodes.history(master)
        newest = max(terms, key=lambda t: t["term"], default=None)
        if newest is None or newest["node"] != master or newest.get("began") is None:
            return None
        return terms if len(terms) > len(faults) else None

    return wait_for(ready, timeout=20, what="the history to show every term")


@dataclass
class Scenario:
    """One run: the world with its load balancer and load, the faults, the verdict."""

    lb: str
    fenced: bool
    faults: list[Fault]
    records: list[dict[str, Any]]
    terms: list[dict[str, Any]]
    verdict: Verdict


def scenario(
    lb: str,
    tmp: Path,
    kinds: tuple[str, ...] = ("switchover", "sigterm", "sigkill", "sigstop"),
    fenced: bool = True,
    rounds: int = 1,
    pause: float = 1.0,
    drain: float = 0.3,
) -> Scenario:
    """The whole run in a world of its own; ``tmp`` holds the logs and the load's file."""
    tmp.mkdir(parents=True, exist_ok=True)
    with World(HOSTS) as world:
        nodes = Nodes(world, tmp, fenced=fenced, drain=drain)
        try:
            proxy = start_lb(lb, world, tmp)
            nodes.wait_serving()
            nodes.wait_master()
            load = Load(world, tmp)
            began = time.time()
            try:
                wait_for(
                    lambda: proxy.poll() is None and load.served_since(began),
                    timeout=20,
                    what=f"a request served through {lb} (and {lb} running: see {tmp})",
                )
                faults = run_faults(nodes, load, kinds * rounds, pause=pause)
                time.sleep(pause)
                terms = settled_history(nodes, faults)
            finally:
                records = load.stop()
        except BaseException:
            print(nodes.logs(), file=sys.stderr)
            raise
    return Scenario(lb, fenced, faults, records, terms, judge(records, terms))
