"""Fault proxies on etcd's peer (raft) traffic: cut a member off from its peers.

Each member keeps listening for its peers on its real port, but advertises
(``--initial-advertise-peer-urls`` and ``--initial-cluster``) the URL of a
:class:`PeerProxy` in front of it, so every connection between two members
passes through the proxy of the member it goes to. One :class:`PeerNet` holds
the proxies of a cluster and the cut: the set of members that are isolated
from the rest.

Every new connection is judged once, by its first request head. etcd's
rafthttp sends ``X-Server-From`` and ``X-Raft-To`` (member ids in hex) on
every stream and pipeline request; the other peer requests (``GET
/members``, ``GET /version``, and ``POST /leases``, a follower forwarding a
keepalive to the leader) carry neither and are judged by the member they go
to. Keep-alive connections stay with their first request's pair (etcd's
stream, pipeline and other peer requests use separate HTTP transports).

A connection between the two sides of the cut is, by the cut's mode:

* ``blackhole``: held, in both directions: bytes wait and flow once the cut
  heals (as TCP would retransmit them), also on connections that were open
  when the cut began, such as long-lived raft streams;
* ``reset``: closed with a RST, those already open at once, new ones right
  after their request head.

All of it runs on the loop of a :class:`tests.support.faultproxy.ProxyHub`;
the control methods are thread-safe and return once the change is in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from tests.support.faultproxy import BLACKHOLE, OPEN, RESET, FaultProxy, ProxyHub, abort

HEAD_LIMIT = 16384  # bytes read at most while looking for the end of the request head
HEAD_TIMEOUT = 2.0  # s to wait for it
FROM, TO = "x-server-from", "x-raft-to"


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The request line and the headers (names lower-cased) of an HTTP request head."""
    text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    line, *rest = text.split("\r\n")
    headers: dict[str, str] = {}
    for raw in rest:
        name, sep, value = raw.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return line, headers


def blocked(frm: str | None, to: str | None, isolated: Collection[str]) -> bool:
    """Whether the cut separates ``frm`` and ``to`` (None: not known).

    The isolated members form one side and the others the other side. An
    unknown end is judged by the known one: a connection from an unknown
    member is cut when it goes to an isolated one.
    """
    if frm is None and to is None:
        return False
    if frm is None or to is None:
        return (frm or to) in isolated
    return (frm in isolated) != (to in isolated)


@dataclass(eq=False)
class _Conn:
    member: str  # the member whose proxy it reached
    gate: asyncio.Event
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """Bytes up to the end of the request head (and maybe beyond); fewer on EOF."""
    data = b""
    for _ in range(HEAD_LIMIT):  # each read returns at least one byte or ends the loop
        if b"\r\n\r\n" in data or len(data) >= HEAD_LIMIT:
            break
        chunk = await reader.read(HEAD_LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return data


class PeerNet:
    """The peer proxies of one etcd cluster, and the cut between its members."""

    def __init__(self, hub: ProxyHub) -> None:
        self.hub = hub
        self.proxies: dict[str, PeerProxy] = {}
        self.names: dict[str, str] = {}  # hex member id -> member name
        self.isolated: frozenset[str] = frozenset()
        self.mode = OPEN
        # (X-Server-From, X-Raft-To, request line) of the latest connections
        self.seen: deque[tuple[str | None, str | None, str]] = deque(maxlen=200)
        self._conns: set[_Conn] = set()

    def add(self, member: str, peer_port: int) -> str:
        """A proxy in front of ``member``'s peer port; returns the URL to advertise."""
        proxy = self.hub.adopt(lambda: PeerProxy(member, peer_port, self))
        self.proxies[member] = proxy
        return proxy.url

    def learn(self, ids: Mapping[str, str]) -> None:
        """``ids``: member name -> member id in hex, as the headers carry it."""
        self.names.update({hex_id.lower(): name for name, hex_id in ids.items()})

    def pair(self, headers: Mapping[str, str], to: str) -> tuple[str | None, str | None]:
        """(from, to) member names of a request that reached ``to``'s proxy.

        Ids are resolved when asked, with the ids known by then: raft streams
        open while the cluster forms, before its member list can be read.
        """
        frm = self.names.get(headers.get(FROM, "").lower())
        return frm, self.names.get(headers.get(TO, "").lower(), to)

    def isolate(self, members: Iterable[str], mode: str = BLACKHOLE) -> None:
        """Cut ``members`` off from the others (and they from them), in ``mode``."""
        if mode not in (BLACKHOLE, RESET):
            raise ValueError(f"unknown mode {mode!r}")
        isolated = frozenset(members)
        self.hub.call(lambda: self._apply(isolated, mode))

    def heal(self) -> None:
        self.hub.call(lambda: self._apply(frozenset(), OPEN))

    # -- on the hub's loop -------------------------------------------------

    def _apply(self, isolated: frozenset[str], mode: str) -> None:
        self.isolated, self.mode = isolated, mode
        for conn in list(self._conns):
            self._judge(conn)

    def _judge(self, conn: _Conn) -> None:
        if not blocked(*self.pair(conn.headers, conn.member), self.isolated):
            conn.gate.set()
        elif self.mode == RESET:
            for writer in conn.writers:
                abort(writer)
        else:
            conn.gate.clear()

    def _track(self, conn: _Conn) -> None:
        self._conns.add(conn)
        self._judge(conn)

    def _forget(self, conn: _Conn) -> None:
        self._conns.discard(conn)


class PeerProxy(FaultProxy):
    """Forwards to one member's real peer port; each connection judged by :class:`PeerNet`."""

    def __init__(self, member: str, peer_port: int, net: PeerNet) -> None:
        super().__init__(f"peer->{member}", ("127.0.0.1", peer_port))
        self.member = member
        self.net = net

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = _Conn(self.member, asyncio.Event(), [writer])
        try:
            with contextlib.suppress(TimeoutError, OSError):
                head = await asyncio.wait_for(_read_head(reader), HEAD_TIMEOUT)
                line, conn.headers = parse_head(head)
                self.net.seen.append((conn.headers.get(FROM), conn.headers.get(TO), line))

                def connected(up_writer: asyncio.StreamWriter) -> None:
                    conn.writers.append(up_writer)
                    self.net._track(conn)  # may abort both ends at once (reset mode)

                await self._relay(reader, writer, conn.gate, head, connected)
        finally:
            self.net._forget(conn)
            self._writers.discard(writer)
            if not writer.is_closing():
                abort(writer)
