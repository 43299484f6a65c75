"""The Store contract, written once and run against every backend.

Each backend's test module builds stores with a factory and calls
:func:`check_contract`. Lease expiry is exercised by the backend modules,
because it needs the backend's own notion of time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.errors import StoreLeaseGone
from app.store.base import EventKind, Put, Store

StoreFactory = Callable[[], Awaitable[Store]]


async def check_contract(make: StoreFactory) -> None:
    a, b = await make(), await make()
    try:
        await _check(a, b)
    finally:
        await a.close()
        await b.close()


async def _check(a: Store, b: Store) -> None:
    key = "/contract/leader"
    la = await a.grant(5)
    lb = await b.grant(5)
    assert la.lease_id != lb.lease_id
    assert la.ttl >= 5

    won = await a.acquire(key, b"A", la.lease_id)
    assert won.won and won.create_revision > 0
    lost = await b.acquire(key, b"B", lb.lease_id)
    assert not lost.won
    assert lost.holder is not None and lost.holder.value == b"A"
    assert lost.holder.create_revision == won.create_revision
    assert lost.holder.lease == la.lease_id
    assert lost.revision >= won.create_revision

    kv, rev = await b.get(key)
    assert kv is not None and kv.value == b"A" and rev >= kv.mod_revision

    assert await b.resign(key, won.create_revision + 1000) is False
    assert (await a.get(key))[0] is not None
    start = (await a.get(key))[1] + 1
    assert await a.resign(key, won.create_revision) is True
    assert (await a.get(key))[0] is None
    events = await b.watch(key, start, timeout=2.0)
    assert [e.kind for e in events][:1] == [EventKind.DELETE]
    assert events[0].kv.value == b"A"

    again = await b.acquire(key, b"B", lb.lease_id)
    assert again.won and again.create_revision > won.create_revision

    assert await b.keepalive(lb.lease_id) >= 5
    await b.revoke(lb.lease_id)
    assert (await a.get(key))[0] is None, "revoking a lease deletes its keys"
    assert await b.keepalive(lb.lease_id) == 0.0
    await b.revoke(lb.lease_id)  # revoking a gone lease is not an error

    quiet_from = (await a.get(key))[1] + 1
    assert await a.watch(key, quiet_from, timeout=0.2) == []

    # Lease 0: a create-if-absent key bound to no lease; the first account stands.
    first = await a.acquire("/contract/history/1", b"first", 0)
    assert first.won and first.create_revision > 0
    second = await b.acquire("/contract/history/1", b"second", 0)
    assert not second.won and second.holder is not None and second.holder.value == b"first"
    assert second.holder.lease == 0

    await a.put("/contract/members/x", b"1", la.lease_id)
    await a.put("/contract/members/y", b"\xff garbage", 0)
    await a.put("/contract/membersz", b"no", 0)
    listed, listed_at = await b.get_prefix("/contract/members/")
    assert [kv.key for kv in listed] == ["/contract/members/x", "/contract/members/y"]
    assert listed[1].value == b"\xff garbage"
    # A read reports the revision it saw: no older than any write it shows, and a
    # later read after a write reports a newer one.
    assert listed_at >= max(kv.mod_revision for kv in listed)
    await a.put("/contract/members/z", b"2", 0)
    relisted, relisted_at = await b.get_prefix("/contract/members/")
    assert relisted_at > listed_at and len(relisted) == 3
    assert (await b.get("/contract/members/z"))[1] >= relisted_at


async def check_absent_guard(make: StoreFactory) -> None:
    """``acquire(..., absent=[k])`` loses while ``k`` exists, atomically."""
    s = await make()
    try:
        lease = await s.grant(5)
        await s.put("/guard/pause", b"{}", 0)
        blocked = await s.acquire("/guard/leader", b"A", lease.lease_id, absent=["/guard/pause"])
        assert not blocked.won and blocked.holder is None
        assert (await s.get("/guard/leader"))[0] is None
        _, rev = await s.get("/guard/pause")
        await s.resign("/guard/pause", (await s.get("/guard/pause"))[0].create_revision)
        assert rev > 0
        won = await s.acquire("/guard/leader", b"A", lease.lease_id, absent=["/guard/pause"])
        assert won.won
        await s.revoke(lease.lease_id)
    finally:
        await s.close()


async def check_same_guard(make: StoreFactory) -> None:
    """``acquire(..., same={k: rev})`` wins only while ``k`` is the very record read."""
    s = await make()
    try:
        lease = await s.grant(5)
        await s.put("/same/switchover", b"to me", 0)
        first = (await s.get("/same/switchover"))[0]
        assert first is not None
        await s.resign("/same/switchover", first.create_revision)
        await s.put("/same/switchover", b"to another", 0)  # a newer record, same key
        stale = {"/same/switchover": first.create_revision}
        blocked = await s.acquire("/same/leader", b"A", lease.lease_id, same=stale)
        assert not blocked.won and blocked.holder is None
        current = (await s.get("/same/switchover"))[0]
        assert current is not None
        fresh = {"/same/switchover": current.create_revision}
        assert (await s.acquire("/same/leader", b"A", lease.lease_id, same=fresh)).won
        await s.revoke(lease.lease_id)
    finally:
        await s.close()


async def check_resign_with_puts(make: StoreFactory) -> tuple[int, int]:
    """``resign(key, rev, puts, absent)`` deletes and writes together or not at all: a
    failed guard, or a put on a gone lease (``StoreLeaseGone``), changes nothing.

    Returns the revisions of the delete's event and of the put (etcd: the same one).
    """
    key, record = "/handing/leader", "/handing/record"
    s = await make()
    try:
        lease, other = await s.grant(10), await s.grant(10)
        won = await s.acquire(key, b"me", lease.lease_id)
        start = won.revision + 1
        await s.put(record, b"someone else's", 0)
        put = Put(record, b"mine", other.lease_id)
        assert await s.resign(key, won.create_revision, [put], absent=[record]) is False
        assert (await s.get(key))[0] is not None  # the guard failed: nothing changed
        theirs = (await s.get(record))[0]
        assert theirs is not None and theirs.value == b"someone else's"
        assert await s.resign(record, theirs.create_revision)
        await s.revoke(other.lease_id)
        try:
            await s.resign(key, won.create_revision, [put], absent=[record])
        except StoreLeaseGone:
            pass
        else:
            raise AssertionError("a put on a revoked lease went in")
        assert (await s.get(key))[0] is not None and (await s.get(record))[0] is None
        third = await s.grant(10)
        put = Put(record, b"mine", third.lease_id)
        assert await s.resign(key, won.create_revision, [put], absent=[record]) is True
        written, _ = await s.get(record)
        assert (await s.get(key))[0] is None and written is not None
        assert written.value == b"mine" and written.lease == third.lease_id
        events = await s.watch("/handing/", start, 1.0, prefix=True)
        deleted = [e.revision for e in events if e.kv.key == key and e.kind is EventKind.DELETE]
        assert deleted, events
        await s.revoke(third.lease_id)
        await s.revoke(lease.lease_id)
        return deleted[-1], written.mod_revision
    finally:
        await s.close()


async def check_renew_reads_the_key(make: StoreFactory) -> None:
    """``renew(lease, key)`` renews and reads ``key`` after it; a gone lease reads nothing."""
    key = "/renew/leader"
    s = await make()
    try:
        lease = await s.grant(10)
        won = await s.acquire(key, b"A", lease.lease_id)
        renewal = await s.renew(lease.lease_id, key)
        assert renewal.ttl >= 10 and renewal.key is not None
        assert renewal.key.value == b"A" and renewal.key.create_revision == won.create_revision
        assert renewal.revision >= won.revision
        assert await s.resign(key, won.create_revision)
        after = await s.renew(lease.lease_id, key)
        assert after.ttl >= 10 and after.key is None and after.revision > won.revision
        await s.revoke(lease.lease_id)
        gone = await s.renew(lease.lease_id, key)
        assert gone.ttl == 0 and gone.revision == 0
    finally:
        await s.close()


async def check_prefix_watch(make: StoreFactory) -> None:
    """``watch(prefix, ..., prefix=True)`` sees every key under the prefix, and no other."""
    a, b = await make(), await make()
    try:
        start = (await a.get("/pw/"))[1] + 1
        await a.put("/pwz", b"outside", 0)
        await a.put("/pw/control/pause", b"{}", 0)
        events = await b.watch("/pw/", start, timeout=2.0, prefix=True)
        assert [(e.kind, e.kv.key) for e in events][:1] == [(EventKind.PUT, "/pw/control/pause")]
        assert all(e.kv.key.startswith("/pw/") for e in events)
        exact = await b.watch("/pw/control", start, timeout=0.2)
        assert exact == [], "without prefix only the key itself is watched"
    finally:
        await a.close()
        await b.close()
