"""The embedded SQLite store: the contract, expiry on the shared clock, persistence."""

import asyncio
from pathlib import Path

from app.clock import FakeClock
from app.errors import StoreUnavailable
from app.store.base import EventKind
from app.store.local import LocalStore
from app.store.memory import MemoryData, MemoryStore
from app.store.wake import WakeDir
from tests.store_contract import (
    check_absent_guard,
    check_contract,
    check_prefix_watch,
    check_same_guard,
)


def test_local_store_keeps_the_contract(tmp_path: Path):
    async def make():
        return LocalStore(tmp_path / "s.sqlite", timeout=1.0)

    asyncio.run(check_contract(make))
    asyncio.run(check_absent_guard(make))
    asyncio.run(check_same_guard(make))
    asyncio.run(check_prefix_watch(make))


def test_memory_store_keeps_the_contract():
    data = MemoryData(FakeClock())

    async def make():
        return MemoryStore(data)

    asyncio.run(check_contract(make))
    asyncio.run(check_absent_guard(make))
    asyncio.run(check_same_guard(make))
    asyncio.run(check_prefix_watch(make))


def test_local_lease_expires_ttl_after_the_last_keepalive(tmp_path: Path):
    clock = FakeClock()

    async def go():
        s = LocalStore(tmp_path / "s.sqlite", timeout=1.0, clock=clock)
        lease = await s.grant(2)
        assert (await s.acquire("/k", b"v", lease.lease_id)).won
        clock.advance(1.9)
        assert await s.keepalive(lease.lease_id) == 2.0
        clock.advance(1.9)
        assert (await s.get("/k"))[0] is not None
        clock.advance(0.2)
        assert (await s.get("/k"))[0] is None
        assert await s.keepalive(lease.lease_id) == 0.0
        await s.close()

    asyncio.run(go())


def test_terms_keep_growing_across_reopen(tmp_path: Path):
    async def go():
        terms = []
        for _ in range(3):
            s = LocalStore(tmp_path / "s.sqlite", timeout=1.0)
            lease = await s.grant(5)
            result = await s.acquire("/k", b"v", lease.lease_id)
            terms.append(result.create_revision)
            await s.revoke(lease.lease_id)
            await s.close()
        return terms

    terms = asyncio.run(go())
    assert terms == sorted(set(terms))


def test_an_unopenable_file_is_store_unavailable(tmp_path: Path):
    (tmp_path / "dir.sqlite").mkdir()

    async def go():
        s = LocalStore(tmp_path / "dir.sqlite", timeout=0.2)
        try:
            await s.grant(2)
        finally:
            await s.close()

    try:
        asyncio.run(go())
    except StoreUnavailable as exc:
        assert "dir.sqlite" in str(exc)
    else:
        raise AssertionError("expected StoreUnavailable")


def test_garbage_file_is_store_unavailable(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database" * 100)

    async def go():
        s = LocalStore(path, timeout=0.2)
        try:
            await s.get("/k")
        finally:
            await s.close()

    try:
        asyncio.run(go())
    except StoreUnavailable:
        pass
    else:
        raise AssertionError("expected StoreUnavailable")


def test_leases_of_another_boot_are_expired_at_once(tmp_path: Path):
    """Finding 4: expiry instants of a previous boot's clock kept a dead key alive."""
    path = tmp_path / "s.sqlite"

    async def go():
        before = LocalStore(path, timeout=1.0, clock=FakeClock(1_000_000.0), boot_id="boot-a")
        lease = await before.grant(2)
        assert (await before.acquire("/k", b"old master", lease.lease_id)).won
        await before.put("/maintenance", b"{}", 0)
        await before.close()
        # Rebooted: the clock starts again near zero, far before the old expiry instant.
        after = LocalStore(path, timeout=1.0, clock=FakeClock(10.0), boot_id="boot-b")
        try:
            fresh = await after.grant(2)
            taken = await after.acquire("/k", b"new master", fresh.lease_id)
            kept = (await after.get("/maintenance"))[0]
            return taken.won, await after.keepalive(lease.lease_id), kept
        finally:
            await after.close()

    won, old_lease_ttl, kept = asyncio.run(go())
    assert won, "the leader key of the previous boot still blocks the cluster"
    assert old_lease_ttl == 0.0
    assert kept is not None, "a key without a lease must survive the reboot"


def test_the_same_boot_keeps_its_leases(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    clock = FakeClock(50.0)

    async def go():
        first = LocalStore(path, timeout=1.0, clock=clock, boot_id="boot-a")
        lease = await first.grant(2)
        assert (await first.acquire("/k", b"master", lease.lease_id)).won
        second = LocalStore(path, timeout=1.0, clock=clock, boot_id="boot-a")
        try:
            other = await second.grant(2)
            return (await second.acquire("/k", b"other", other.lease_id)).won
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(go()) is False


# Without wake-ups a watch would see a change only at its next quiet read; with
# ``quiet`` an hour and a 60 s timeout, these watches end with events only if
# the wake-up (or the expiry instant) woke them.
NO_QUIET_READS = 3600.0


def test_a_write_by_another_store_object_wakes_a_watch(tmp_path: Path):
    path = tmp_path / "s.sqlite"

    async def go():
        watcher = LocalStore(path, timeout=1.0, quiet=NO_QUIET_READS)
        writer = LocalStore(path, timeout=1.0)
        try:
            _, rev = await watcher.get("/w/leader")
            watching = asyncio.create_task(watcher.watch("/w/leader", rev + 1, timeout=60.0))
            await asyncio.sleep(0.1)  # let the watch read once and go to sleep
            assert not watching.done()
            await writer.put("/w/leader", b"x", 0)
            events = await asyncio.wait_for(watching, 60.0)
            assert [(e.kind, e.kv.value) for e in events] == [(EventKind.PUT, b"x")]
        finally:
            await watcher.close()
            await writer.close()

    asyncio.run(go())


def test_a_watch_wakes_when_the_holders_lease_expires(tmp_path: Path):
    path = tmp_path / "s.sqlite"

    async def go():
        holder = LocalStore(path, timeout=1.0)
        watcher = LocalStore(path, timeout=1.0, quiet=NO_QUIET_READS)
        try:
            lease = await holder.grant(1)
            won = await holder.acquire("/w/leader", b"h", lease.lease_id)
            _, rev = await watcher.get("/w/leader")
            # The holder never writes again: nobody but the watcher sweeps the lease.
            events = await asyncio.wait_for(watcher.watch("/w/leader", rev + 1, 60.0), 60.0)
            assert [(e.kind, e.kv.create_revision) for e in events] == [
                (EventKind.DELETE, won.create_revision)
            ]
        finally:
            await holder.close()
            await watcher.close()

    asyncio.run(go())


def test_a_wake_socket_left_by_a_dead_process_is_removed(tmp_path: Path):
    wake = WakeDir(tmp_path / "s.sqlite.wake")
    live, dead = wake.listen(), wake.listen()
    assert live is not None and dead is not None
    dead.sock.close()  # its file stays, as after a crash
    assert dead.path.exists()
    wake.notify()
    assert not dead.path.exists()
    assert live.path.exists() and live.sock.recv(64) == b"!"
    live.close()
    wake.close()


def test_a_deep_state_directory_still_gets_wake_ups(tmp_path: Path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    wake = WakeDir(deep / "s.sqlite.wake")
    listener = wake.listen()
    assert listener is not None and len(str(listener.path)) > 108
    wake.notify()
    assert listener.sock.recv(64) == b"!"
    listener.close()
    wake.close()
