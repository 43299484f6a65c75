"""One client against one etcd: CPU and latency per request to etcd's JSON gateway.

Not a test (and not in ``make test``): it prints figures.

It starts an etcd (Debian's, ``--members`` of them, on loopback) and, for each client,
sends ``--n`` linearizable ``/v3/kv/range`` POSTs of one key, then ``--n`` renewals (a
``/v3/lease/keepalive`` and a ``count_only`` range, one after the other, to the same
member, as a node renews), each request waiting for the one before. It prints, per
client: the client's CPU per request (``time.process_time`` over the run), wall p50 and
p99 per request (per pair for renewals), and etcd's CPU per request (utime + stime of
every member). The clients:

* ``etcdclient``: :class:`app.store.etcd_client.EtcdClient`, exactly as a node uses it;
* ``http1``: :class:`app.store.http1.ConnectionPool` alone, doing the same POSTs;
* ``httpx``: a plain ``httpx.AsyncClient`` doing the same POSTs (what EtcdClient
  sent through before it had a client of its own);
* ``wire``: one blocking socket, the request written and the reply parsed with
  ``httptools`` and nothing else: what the gateway and etcd take, as seen on the wire.

Every request has a timeout; etcd is stopped by PID; traffic stays on 127.0.0.1.

    .venv/bin/python bench/etcd_client.py --n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httptools
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.store.etcd_client import HASLEADER, EtcdClient
from app.store.http1 import ConnectionPool
from bench.procfs import cpu_seconds
from tests.support.etcd import ETCD_BIN, EtcdCluster

KEY = base64.b64encode(b"/bench/key").decode()
RANGE = ("/kv/range", {"key": KEY})
CONFIRM = ("/kv/range", {"key": KEY, "count_only": True})
TIMEOUT = 5.0
WARMUP = 50

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


def payload(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class Wire:
    """POSTs on one blocking keep-alive socket; the reply read to its end with httptools."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        self.done = False

    def on_message_complete(self) -> None:
        self.done = True

    def post(self, path: str, body: dict[str, Any]) -> None:
        data = payload(body)
        head = (
            f"POST /v3{path} HTTP/1.1\r\nHost: {self.host}\r\n"
            "Grpc-Metadata-Hasleader: true\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + data)
        parser, self.done = httptools.HttpResponseParser(self), False
        for _ in range(10_000):
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("etcd closed the connection")
            parser.feed_data(data)
            if self.done:
                return
        raise RuntimeError("reply did not end")


def figures(label: str, walls: list[float], cpu: float, etcd: float, per: int) -> str:
    walls = sorted(walls)
    p50 = statistics.median(walls) * 1000
    p99 = walls[min(len(walls) - 1, int(len(walls) * 0.99))] * 1000
    requests = len(walls) * per
    return (
        f"  {label:<11} client CPU {cpu / requests * 1e6:6.0f} us/request, wall p50 {p50:5.2f} ms,"
        f" p99 {p99:5.2f} ms, etcd CPU {etcd / requests * 1e6:5.0f} us/request"
    )


async def timed(n: int, step: Callable[[], Awaitable[Any]], etcd_pids: list[int]) -> tuple:
    for _ in range(WARMUP):
        await step()
    walls = []
    etcd0 = sum(cpu_seconds(p) for p in etcd_pids)
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        await step()
        walls.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu0
    return walls, cpu, sum(cpu_seconds(p) for p in etcd_pids) - etcd0


async def scenario(label: str, call: Call, n: int, lease: str, pids: list[int]) -> float:
    """Print the figures of ``call``; return the renewal pair's p50 wall, in s."""

    async def pair() -> None:
        await call("/lease/keepalive", {"ID": lease})
        await call(*CONFIRM)

    walls, cpu, etcd = await timed(n, lambda: call(*RANGE), pids)
    print(figures(label, walls, cpu, etcd, 1), "[range]")
    walls, cpu, etcd = await timed(n, pair, pids)
    print(figures(label, walls, cpu, etcd, 2), "[renewal pair]")
    return statistics.median(walls)


def halves(wire: Wire, lease: str, n: int) -> tuple[float, float]:
    """p50 of a keepalive and of its confirming range, each timed alone on the wire, in s."""
    keepalive, confirm = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        wire.post("/lease/keepalive", {"ID": lease})
        t1 = time.perf_counter()
        wire.post(*CONFIRM)
        keepalive.append(t1 - t0)
        confirm.append(time.perf_counter() - t1)
    return statistics.median(keepalive), statistics.median(confirm)


async def bench(url: str, n: int, pids: list[int]) -> None:
    etcd = EtcdClient([url], timeout=TIMEOUT)
    try:
        lease = str((await etcd.call("/lease/grant", {"TTL": 600}))["ID"])
        pair = await scenario("etcdclient", etcd.call, n, lease, pids)
    finally:
        await etcd.close()

    pool = ConnectionPool()
    try:

        async def via_pool(path: str, body: dict[str, Any]) -> bytes:
            status, content = await pool.request(
                "POST", f"{url}/v3{path}", payload(body), HASLEADER
            )
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {content[:200]!r}")
            return content

        await scenario("http1", via_pool, n, lease, pids)
    finally:
        await pool.aclose()

    async with httpx.AsyncClient(trust_env=False, timeout=TIMEOUT, headers=HASLEADER) as http:

        async def via_httpx(path: str, body: dict[str, Any]) -> Any:
            reply = await http.post(f"{url}/v3{path}", json=body)
            reply.raise_for_status()
            return reply.content

        await scenario("httpx", via_httpx, n, lease, pids)

    wire = Wire(url)
    try:

        async def on_wire(path: str, body: dict[str, Any]) -> None:
            wire.post(path, body)

        await scenario("wire", on_wire, n, lease, pids)
        keepalive, confirm = halves(wire, lease, n)
    finally:
        wire.sock.close()
    print(
        f"renewal pair through EtcdClient, p50 {pair * 1000:.2f} ms: on the wire, keepalive"
        f" {keepalive * 1000:.2f} ms + range {confirm * 1000:.2f} ms; the client's share"
        f" {(pair - keepalive - confirm) * 1000:.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="requests (pairs) per run")
    parser.add_argument("--members", type=int, default=1, help="etcd members")
    args = parser.parse_args()
    logging.getLogger("app").setLevel(logging.ERROR)  # etcd 3.4.23's lease-bug warning
    with (
        tempfile.TemporaryDirectory(prefix="vipmon-bench-etcd-") as tmp,
        EtcdCluster(Path(tmp), size=args.members, binary=ETCD_BIN) as cluster,
    ):
        leader = cluster.leader_index()
        print(f"etcd {args.members} member(s), client to member 0 (leader: member {leader})")
        pids = [m.pid for m in cluster.members]
        asyncio.run(bench(cluster.client_urls[0], args.n, pids))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
