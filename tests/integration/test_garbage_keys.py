"""Garbage in every kind of key of a running cluster: the master stays, the election works.

Any process with write access to the store can put any bytes under any key.
This test writes, straight into the store (etcd's JSON gateway, or the
embedded store's file opened from the test process), values that are not
vipmon records into every kind of key but the leader key (garbage there means
"held by someone unknown", by design: see test_etcd_cluster.py): JSON nested
deeper than the parser's recursion limit, bytes that are not UTF-8, and
records whose times no ``datetime`` can hold (``1e20``, ``NaN``, ``-1``...).

Three real ``vipmon run`` nodes must keep their master (same node, same
term), their standbys and their API (``/role``, ``/cluster``, ``/history``),
log one WARNING per garbage key revision, and elect a new master with a newer
term when the master is killed while the garbage is still there.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from app.store.local import LocalStore
from tests.support.etcd import ETCD_BIN, EtcdCluster
from tests.support.nodes import Cluster, Node, wait_for
from tests.support.probe import Prober, violations

CLUSTER = "garbage"
PREFIX = f"/vipmon/{CLUSTER}/"

DEEP_LIST = b"[" * 2000  # RecursionError in json.loads
DEEP_OBJECT = b"{" * 5000
NOT_UTF8 = b"\xff\xfe\x80 not utf-8 \xc3\x28"


def member(node_id: str, started_at: str) -> bytes:
    """A member record but for its start time, written as a JSON literal (``NaN`` too)."""
    return (
        f'{{"id": "{node_id}", "url": "http://127.0.0.1:9", "version": "0", '
        f'"started_at": {started_at}, "eligible": true, "priority": 100, '
        f'"maintenance": false, "check_ok": true}}'
    ).encode()


def begin(term: int, began: str) -> bytes:
    return f'{{"term": {term}, "id": "ghost", "url": "", "began": {began}}}'.encode()


def end(term: int, ended: str) -> bytes:
    return (
        f'{{"term": {term}, "id": "ghost", "url": "", "ended": {ended}, '
        f'"how": "lease expired", "to": null, "detail": "", "by": "ghost"}}'
    ).encode()


def roster(node_id: str, first_seen: str) -> bytes:
    return (
        f'{{"id": "{node_id}", "url": "", "first_seen": {first_seen}, "missing_since": null}}'
    ).encode()


def history(term: int, part: str) -> str:
    return f"history/{term:020d}/{part}"


#: Terms no store can reach (etcd's revisions are int64): no real record is overwritten.
FAKE_TERMS = (10**19 + 1, 10**19 + 2, 10**19 + 3)
T1, T2, T3 = FAKE_TERMS


#: Keys (under the cluster's prefix) of members that do not exist, and their garbage.
#: Every node reads each of them and must log it once.
GHOSTS: dict[str, bytes] = {
    "members/ghost-deep-list": DEEP_LIST,
    "members/ghost-deep-object": DEEP_OBJECT,
    "members/ghost-not-utf8": NOT_UTF8,
    "members/ghost-future": member("ghost-future", "1e20"),
    "members/ghost-far": member("ghost-far", "1e12"),
    "members/ghost-nan": member("ghost-nan", "NaN"),
    "members/ghost-infinity": member("ghost-infinity", "Infinity"),
    "members/ghost-negative": member("ghost-negative", "-1"),
    history(T1, "begin"): begin(T1, "1e20"),
    history(T1, "end"): end(T1, "Infinity"),
    history(T2, "begin"): DEEP_LIST,
    history(T2, "end"): NOT_UTF8,
    history(T3, "begin"): begin(T3, "NaN"),
    history(T3, "end"): end(T3, "-1"),
    "roster/ghost-deep-list": DEEP_LIST,
    "roster/ghost-not-utf8": NOT_UTF8,
    "roster/ghost-future": roster("ghost-future", "1e20"),
    "roster/ghost-nan": roster("ghost-nan", "NaN"),
}


class Writer(Protocol):
    """Writes into the cluster's store directly, with no vipmon code in between."""

    def put(self, key: str, value: bytes) -> int:
        """Put ``value`` under ``key`` with no lease; return the key's mod revision."""

    def delete(self, key: str) -> None: ...


@dataclass
class EtcdWriter:
    etcd: EtcdCluster

    def put(self, key: str, value: bytes) -> int:
        return self.etcd.put(key, value)

    def delete(self, key: str) -> None:
        body = {"key": base64.b64encode(key.encode()).decode()}
        self.etcd.member(0).post("/v3/kv/deleterange", body)


class LocalWriter:
    """The nodes' own SQLite file, opened by the test process as one more client."""

    def __init__(self, state_dir: Path) -> None:
        self.store = LocalStore(state_dir / "vipmon.sqlite", timeout=5.0)
        self.runner = asyncio.Runner()

    def put(self, key: str, value: bytes) -> int:
        self.runner.run(self.store.put(key, value, 0))
        kv, _ = self.runner.run(self.store.get(key))
        assert kv is not None
        return kv.mod_revision

    def delete(self, key: str) -> None:
        kv, _ = self.runner.run(self.store.get(key))
        if kv is not None:
            assert self.runner.run(self.store.resign(key, kv.create_revision))

    def close(self) -> None:
        self.runner.run(self.store.close())
        self.runner.close()


@pytest.fixture(
    params=["local", pytest.param("etcd", marks=pytest.mark.etcd)],
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[list[str], Writer]]:
    """The nodes' backend arguments, and a writer into that backend's store."""
    if request.param == "local":
        state = tmp_path / "state"
        state.mkdir()
        args = ["--backend", "local", "--state-dir", str(state), "--cluster", CLUSTER]
        writer = LocalWriter(state)
        try:
            yield args, writer
        finally:
            writer.close()
        return
    if not ETCD_BIN.exists():
        pytest.skip("needs Debian's etcd-server")
    with EtcdCluster(tmp_path / "etcd", size=1) as etcd:
        endpoints = ",".join(etcd.client_urls)
        yield (
            ["--backend", "etcd", "--etcd-endpoints", endpoints, "--cluster", CLUSTER],
            EtcdWriter(etcd),
        )


def warnings(node: Node, key: str, revision: int | None = None) -> int:
    """How many WARNING lines of ``node`` say ``key`` (at ``revision``) is not a record."""
    rev = r"\d+" if revision is None else str(revision)
    pattern = re.compile(
        rf" WARNING .*key {re.escape(key)} holds a value that is not a vipmon record "
        rf"\(\d+ bytes, revision {rev}\)"
    )
    text = node.log_path.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if pattern.search(line))


def state(cluster: Cluster) -> dict[str, object]:
    """What every live node answers now, for the failure messages."""
    seen: dict[str, object] = {}
    for node in cluster.nodes:
        if not node.alive():
            seen[node.node_id] = "dead"
            continue
        try:
            seen[node.node_id] = {
                "monitor": node.monitor(),
                **{path: node.get(path).status_code for path in ("/role", "/cluster", "/history")},
            }
        except (httpx.HTTPError, ValueError) as exc:
            seen[node.node_id] = repr(exc)
    return seen


def wait_until(
    cluster: Cluster, predicate: Callable[[], bool], what: str, timeout: float = 15
) -> None:
    """``wait_for``, with what every node answers in the failure message."""
    try:
        wait_for(predicate, timeout=timeout, interval=0.05, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; nodes: {state(cluster)}") from None


def answers_json(node: Node) -> dict[str, dict[str, object]]:
    """``/role``, ``/cluster`` and ``/history``: each must be 200 with a JSON object."""
    bodies = {}
    for path in ("/role", "/cluster", "/history"):
        reply = node.get(path)
        assert reply.status_code == 200, (node.node_id, path, reply.status_code, reply.text[:500])
        assert reply.headers["content-type"].startswith("application/json")
        body = reply.json()
        assert isinstance(body, dict), (node.node_id, path, body)
        bodies[path] = body
    return bodies


def assert_roles(cluster: Cluster, master: Node, term: int) -> None:
    """``master`` is MASTER in ``term``; every other live node is STANDBY under it."""
    for node in cluster.nodes:
        if not node.alive():
            continue
        bodies = answers_json(node)
        role = bodies["/role"]
        expected = "MASTER" if node is master else "STANDBY"
        assert role["role"] == expected, (node.node_id, role, state(cluster))
        assert role["term"] == term, (node.node_id, role)
        assert role["leader_unknown"] is False, (node.node_id, role)
        assert role["leader"] == {"id": master.node_id, "url": master.url}, (node.node_id, role)
        assert bodies["/cluster"]["leader"] == master.node_id, (node.node_id, bodies["/cluster"])
    status, body = master.monitor()
    assert status == 200 and body.startswith("ROLE=MASTER") and f"term={term}" in body


def term_of(node: Node) -> int:
    term = node.role()["term"]
    assert isinstance(term, int)
    return term


def live_members(node: Node) -> list[str]:
    return sorted(str(m["id"]) for m in node.get("/cluster").json()["members"])


def test_garbage_in_every_kind_of_key(store: tuple[list[str], Writer], tmp_path: Path) -> None:
    args, writer = store
    with Cluster(tmp_path, args) as cluster:
        cluster.add_all(["n1", "n2", "n3"])
        master = cluster.wait_master()
        term = term_of(master)
        standbys = [n for n in cluster.nodes if n is not master]
        wait_until(
            cluster,
            lambda: all(live_members(n) == ["n1", "n2", "n3"] for n in cluster.nodes),
            "three members everywhere",
        )
        assert_roles(cluster, master, term)

        prober = Prober([(n.node_id, n.url) for n in cluster.nodes], interval=0.05)
        with prober:
            # A switchover key blocks every candidate while it exists (by design), and
            # one that is not a record names nobody: the master keeps its role. Removed.
            switchover = PREFIX + "control/switchover"
            revision = writer.put(switchover, DEEP_LIST)
            wait_until(
                cluster,
                lambda: all(warnings(n, switchover, revision) for n in cluster.nodes),
                "every node to log the switchover key as garbage",
            )
            assert_roles(cluster, master, term)
            writer.delete(switchover)

            # Any value of the pause key pauses the cluster: the master keeps its role.
            pause = PREFIX + "control/pause"
            writer.put(pause, NOT_UTF8)
            wait_until(
                cluster, lambda: all(n.role()["paused"] for n in cluster.nodes), "paused everywhere"
            )
            assert_roles(cluster, master, term)
            writer.delete(pause)
            wait_until(
                cluster, lambda: not any(n.role()["paused"] for n in cluster.nodes), "resumed"
            )

            # The garbage that stays: ghosts, live nodes' own member records (each node
            # rewrites its own), a maintenance key, and the master's term's end record.
            revisions = {
                PREFIX + key: writer.put(PREFIX + key, value) for key, value in GHOSTS.items()
            }
            writer.put(PREFIX + "control/maintenance/ghost", DEEP_LIST)
            writer.put(PREFIX + history(term, "end"), end(term, "Infinity"))
            own = [
                (master, DEEP_OBJECT),
                (standbys[0], DEEP_LIST),
                (standbys[1], member("n", "NaN")),
            ]
            for node, value in own:
                writer.put(f"{PREFIX}members/{node.node_id}", value)

            wait_until(
                cluster,
                lambda: all(
                    warnings(n, key, rev) for n in cluster.nodes for key, rev in revisions.items()
                ),
                "every node to log every garbage key",
            )
            # Each node read the garbage in its own record, and so rewrites it.
            wait_until(
                cluster,
                lambda: all(warnings(n, f"{PREFIX}members/{n.node_id}") for n, _ in own),
                "every node to log the garbage in its own member record",
            )
            # The ghosts stay out of the member list, and the live records are back.
            wait_until(
                cluster,
                lambda: all(live_members(n) == ["n1", "n2", "n3"] for n in cluster.nodes),
                "three members everywhere, and no ghost",
            )
            assert_roles(cluster, master, term)
            for node in cluster.nodes:
                listed = {t["term"] for t in node.get("/history").json()["terms"]}
                assert not listed & set(FAKE_TERMS), (node.node_id, listed)
                assert node.get("/role").json()["paused"] is False
            # Logged once per key revision, however many times it was read.
            for node in cluster.nodes:
                for key, rev in revisions.items():
                    assert warnings(node, key, rev) == 1, (node.node_id, key, rev)

            # The election still works with the garbage there: kill the master.
            master.kill()
            new = cluster.wait_master(exclude=master, timeout=20)
            new_term = term_of(new)
            assert new_term > term
            prober.wait_positive(new.node_id)
            wait_until(
                cluster,
                lambda: all(
                    n.role()["role"] in ("MASTER", "STANDBY") and n.role()["term"] == new_term
                    for n in cluster.nodes
                    if n.alive()
                ),
                "the survivors to agree on the new term",
            )
            assert_roles(cluster, new, new_term)
            # The dead master's rewritten record was bound to its lease again: it went too.
            survivors = sorted(n.node_id for n in cluster.nodes if n.alive())
            wait_until(
                cluster,
                lambda: all(live_members(n) == survivors for n in cluster.nodes if n.alive()),
                "the dead master's member record to expire with its lease",
            )
        records = prober.stop()

    assert violations(records) == []
    before = [p for p in records if p.node == master.node_id and p.status != 0]
    assert before and all(p.status == 200 and p.term == term for p in before), before[-5:]
    positives = {(p.node, p.term) for p in records if p.status == 200}
    assert positives == {(master.node_id, term), (new.node_id, new_term)}, positives
    for node in standbys:
        answered = [p for p in records if p.node == node.node_id and p.status != 0]
        assert all(p.status in (200, 503) for p in answered)
        assert not any(p.body.startswith("ROLE=UNKNOWN") for p in answered), node.node_id
