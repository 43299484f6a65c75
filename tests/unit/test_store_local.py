"""The embedded SQLite store: the contract, expiry on the shared clock, persistence."""

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from app.clock import FakeClock
from app.errors import StoreError, StoreForeignHost, StoreUnavailable
from app.store.base import EventKind
from app.store.local import LocalStore
from app.store.memory import MemoryData, MemoryStore
from app.store.wake import WakeDir
from tests.store_contract import (
    check_absent_guard,
    check_contract,
    check_prefix_watch,
    check_renew_reads_the_key,
    check_resign_with_puts,
    check_same_guard,
)


def test_local_store_keeps_the_contract(tmp_path: Path):
    async def make():
        return LocalStore(tmp_path / "s.sqlite", timeout=1.0)

    asyncio.run(check_contract(make))
    asyncio.run(check_absent_guard(make))
    asyncio.run(check_same_guard(make))
    asyncio.run(check_prefix_watch(make))
    asyncio.run(check_renew_reads_the_key(make))
    asyncio.run(check_resign_with_puts(make))


def test_memory_store_keeps_the_contract():
    data = MemoryData(FakeClock())

    async def make():
        return MemoryStore(data)

    asyncio.run(check_contract(make))
    asyncio.run(check_absent_guard(make))
    asyncio.run(check_same_guard(make))
    asyncio.run(check_prefix_watch(make))
    asyncio.run(check_renew_reads_the_key(make))
    asyncio.run(check_resign_with_puts(make))


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


async def until_asleep(clock: FakeClock, task: asyncio.Task[None]) -> None:
    """Wait (5 s at most) until ``task`` ended or sleeps on ``clock``."""
    for _ in range(1000):
        if task.done() or clock.next_wake() is not None:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the claim neither ended nor slept")


def held(path: Path, key: str) -> int:
    """The create_revision of ``key`` in the file (0 if absent), read past the store."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT create_revision FROM kv WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0


def test_claim_refuses_a_file_another_live_host_renews(tmp_path: Path):
    """Issue 20, finding 3: another host's live master must keep its lease; this one refuses."""
    path = tmp_path / "s.sqlite"
    clock_a, clock_b = FakeClock(1_000_000.0), FakeClock(10.0)

    async def go():
        a = LocalStore(path, timeout=1.0, clock=clock_a, boot_id="host-a")
        b = LocalStore(path, timeout=1.0, clock=clock_b, boot_id="host-b")
        try:
            lease = await a.grant(2)
            won = await a.acquire("/k", b"a", lease.lease_id)
            claim = asyncio.create_task(b.claim(2.0))
            for _ in range(20):  # host a renews every 0.5 s until b decides
                await until_asleep(clock_b, claim)
                if claim.done():
                    break
                clock_a.advance(0.5)
                clock_b.advance(0.5)
                assert await a.keepalive(lease.lease_id) == 2.0
            with pytest.raises(StoreForeignHost, match="the embedded store is for one host"):
                await claim
            assert await a.keepalive(lease.lease_id) == 2.0
            assert held(path, "/k") == won.create_revision
            with pytest.raises(StoreForeignHost):  # and b stays out
                await b.get("/k")
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_claim_drops_the_leases_of_a_boot_that_renews_nothing(tmp_path: Path):
    """A reboot: the old boot's leader key goes after one TTL unrenewed, never before."""
    path = tmp_path / "s.sqlite"
    clock_a, clock_b = FakeClock(1_000_000.0), FakeClock(10.0)

    async def go():
        # Before the reboot; its clock is far ahead of the new boot's.
        a = LocalStore(path, timeout=1.0, clock=clock_a, boot_id="boot-a")
        b = LocalStore(path, timeout=1.0, clock=clock_b, boot_id="boot-b")
        try:
            lease = await a.grant(2)
            old = await a.acquire("/k", b"old master", lease.lease_id)
            await a.put("/maintenance", b"{}", 0)
            claim = asyncio.create_task(b.claim(2.0))
            watched = 0.0
            for _ in range(20):
                await until_asleep(clock_b, claim)
                if claim.done():
                    break
                assert held(path, "/k") == old.create_revision, f"dropped after {watched} s"
                clock_b.advance(0.5)
                watched += 0.5
            await claim
            assert watched >= 2.0
            fresh = await b.grant(2)
            assert (await b.acquire("/k", b"new master", fresh.lease_id)).won
            assert (await b.get("/maintenance"))[0] is not None, "a key without a lease stays"
            # The old boot, were it still running, neither renews nor touches b's key.
            with pytest.raises(StoreForeignHost):
                await a.keepalive(lease.lease_id)
            with pytest.raises(StoreForeignHost):
                await a.resign("/k", held(path, "/k"))
            assert held(path, "/k") > old.create_revision
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_nodes_of_one_boot_claim_a_dead_boots_file_together(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    clock = FakeClock(10.0)

    async def go():
        a = LocalStore(path, timeout=1.0, clock=FakeClock(1e6), boot_id="boot-a")
        lease = await a.grant(2)
        await a.acquire("/k", b"old master", lease.lease_id)
        await a.close()
        nodes = [LocalStore(path, timeout=1.0, clock=clock, boot_id="boot-b") for _ in range(3)]
        try:
            claims = [asyncio.create_task(n.claim(2.0)) for n in nodes]
            for _ in range(20):
                for c in claims:
                    await until_asleep(clock, c)
                if all(c.done() for c in claims):
                    break
                clock.advance(0.5)
            await asyncio.gather(*claims)
            grants = [await n.grant(2) for n in nodes]
            wins = [
                (await n.acquire("/k", b"n", g.lease_id)).won
                for n, g in zip(nodes, grants, strict=True)
            ]
            assert wins.count(True) == 1
        finally:
            for n in nodes:
                await n.close()

    asyncio.run(go())


def test_claim_adopts_an_unstamped_file_without_dropping_anything(tmp_path: Path):
    """A file of an older vipmon has no stamp: its leases may be live on this host."""
    path = tmp_path / "s.sqlite"
    clock = FakeClock(10.0)

    async def go():
        old = LocalStore(path, timeout=1.0, clock=clock, boot_id="")
        lease = await old.grant(2)
        won = await old.acquire("/k", b"running", lease.lease_id)
        new = LocalStore(path, timeout=1.0, clock=clock, boot_id="boot-b")
        try:
            await new.claim(2.0)  # no stamp, nothing to watch: returns at once
            assert held(path, "/k") == won.create_revision
            assert await new.keepalive(lease.lease_id) == 2.0
        finally:
            await old.close()
            await new.close()

    asyncio.run(go())


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


def test_a_store_never_drops_the_live_leases_of_another_boot(tmp_path: Path):
    """Issue 20, finding 3: a second host on the same file dropped a live master's lease."""
    path = tmp_path / "s.sqlite"

    async def go():
        a = LocalStore(path, timeout=1.0, clock=FakeClock(1_000_000.0), boot_id="host-a")
        b = LocalStore(path, timeout=1.0, clock=FakeClock(10.0), boot_id="host-b")
        try:
            lease = await a.grant(2)
            held = await a.acquire("/k", b"a", lease.lease_id)
            with pytest.raises(StoreError):
                await b.acquire("/k", b"b", (await b.grant(2)).lease_id)
            assert await a.keepalive(lease.lease_id) == 2.0
            kv, _ = await a.get("/k")
            assert kv is not None and kv.create_revision == held.create_revision
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_a_node_starting_while_another_process_holds_the_lock_waits_for_it(tmp_path: Path):
    """Nodes started together on a new file each create its tables and switch it to WAL;
    one that waited past its store timeout used to exit ("database is locked", CI)."""
    path = tmp_path / "s.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process, in the middle of its start-up
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        store = LocalStore(path, timeout=0.05)
        asyncio.run(store.claim(1))  # waits for the lock instead of failing at once
        assert asyncio.run(store.get("/k")) == (None, 1)
        asyncio.run(store.close())
    finally:
        release.join()
        holder.close()


def test_a_start_up_error_that_is_not_a_lock_is_not_retried(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    store = LocalStore(path, timeout=0.05)
    with pytest.raises(StoreUnavailable, match="not a database"):
        asyncio.run(store.claim(1))
    asyncio.run(store.close())
