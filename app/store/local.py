"""The embedded store: a SQLite file shared by the processes of one host.

Each call is one ``BEGIN IMMEDIATE`` transaction, so calls from several
processes are serialised by SQLite's file lock. Lease deadlines are kept on
:class:`app.clock.MonotonicClock` (``CLOCK_BOOTTIME``), which is system-wide,
so every process on the host measures them on the same clock. Expired leases
and their keys are swept at the start of every transaction. The revision
counter lives in the file, so terms keep growing across restarts.

That clock starts again at every boot and means nothing on another host, so
the file is stamped with the boot that uses it, and every transaction first
checks the stamp: a file stamped by another boot is never swept, read or
written. Before a node serves, :meth:`LocalStore.claim` checks that the file
can be written and tells a reboot of this host (the other boot's leases are
dropped, with their keys) from another live host sharing the file (the node
refuses to start); see :mod:`app.store.claim`. Keys without a lease
(maintenance, pause) always survive.

Calls run on one worker thread of the store's own (so one connection, one
page cache) and never block the caller's event loop; a lock held past the
timeout raises ``StoreUnavailable``.

A watch does not poll the file. It sleeps until a writer's wake-up datagram
(:mod:`app.store.wake`: every transaction that changes a key sends one to every
watcher on the host), until the watched key's lease expires (a crashed
holder writes nothing, so the watcher itself sweeps it at that instant), or
for at most a second, whichever comes first. Without a usable wake-up
directory it polls every 20 ms, as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from app.clock import Clock, MonotonicClock
from app.errors import StoreLeaseGone, StoreUnavailable
from app.store import claim
from app.store.base import (
    AcquireResult,
    EventKind,
    KeyValue,
    LeaseGrant,
    Put,
    Renewal,
    Store,
    WatchEvent,
)
from app.store.wake import WakeDir, Wakeups

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('lease', 0);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY, ttl REAL NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, lease INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS boot (id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    create_revision INTEGER NOT NULL, lease INTEGER NOT NULL);
"""
_HISTORY = 1000
_POLL = 0.02  # s between reads of a watch without wake-ups
_QUIET = 1.0  # s at most between reads of a watch with wake-ups (a lost datagram)
_EXPIRY_SLACK = 0.001  # s after a lease's expiry instant before the watch sweeps it
_START_PATIENCE = 10.0  # s a starting node waits at most for another process's lock
_START_RETRY = 0.05  # s between its tries


def _busy(exc: StoreUnavailable) -> bool:
    """Whether SQLite refused for a lock another connection holds (busy or locked)."""
    cause = exc.__cause__
    if not isinstance(cause, sqlite3.OperationalError):
        return False
    name = getattr(cause, "sqlite_errorname", None) or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(cause)


def _matching(column: str, key: str, prefix: bool) -> tuple[str, tuple[int | str, ...]]:
    """A WHERE clause, and its parameters, for ``column`` equal to ``key`` or under it."""
    if prefix:
        return f"substr({column}, 1, ?) = ?", (len(key), key)
    return f"{column} = ?", (key,)


class LocalStore(Store):
    """A store in ``<state_dir>/vipmon.sqlite``. See :mod:`app.store.base`."""

    name = "local"

    def __init__(
        self,
        path: Path,
        *,
        timeout: float,
        clock: Clock | None = None,
        boot_id: str | None = None,
        quiet: float = _QUIET,
    ) -> None:
        """``clock`` and ``boot_id``: this boot's identity, the clock of lease deadlines
        and the file's stamp ("" checks none). Two of them on one file play two hosts
        in tests. ``quiet``: the longest a watch sleeps without a wake-up (a test seam).
        """
        self.path = path
        self.timeout = timeout
        self.clock = clock or MonotonicClock()
        self.boot_id = claim.current_boot_id() if boot_id is None else boot_id
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        self._wake = WakeDir(path.with_name(path.name + ".wake"))
        self._wakeups: Wakeups | None = None
        self._listened = False
        self._quiet = quiet

    # -- plumbing ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _tx(self, body: Callable[[sqlite3.Connection], T], checked: bool = True) -> T:
        """Run ``body`` in one transaction; ``checked``: on this boot's file only, swept first."""
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            self._local.changed = False
            try:
                if checked:
                    claim.check_stamp(conn, self.boot_id, self.path)
                    self._sweep(conn)
                result = body(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"embedded store {self.path}: {exc}") from exc
        if self._local.changed:
            self._wake.notify()
        return result

    async def _run(self, body: Callable[[sqlite3.Connection], T], checked: bool = True) -> T:
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="vipmon-store")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._tx, body, checked)

    def _bump(self, conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'revision'")
        return self._revision(conn)

    @staticmethod
    def _revision(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()[0])

    def _sweep(self, conn: sqlite3.Connection) -> None:
        now = self.clock.now()
        expired = [
            r[0] for r in conn.execute("SELECT id FROM leases WHERE expires_at <= ?", (now,))
        ]
        for lease_id in expired:
            self._drop_lease(conn, lease_id)

    def _drop_lease(self, conn: sqlite3.Connection, lease_id: int) -> None:
        conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
        keys = [r[0] for r in conn.execute("SELECT key FROM kv WHERE lease = ?", (lease_id,))]
        for key in keys:
            self._delete(conn, key)

    def _read(self, conn: sqlite3.Connection, key: str) -> KeyValue | None:
        row = conn.execute(
            "SELECT key, value, create_revision, mod_revision, lease FROM kv WHERE key = ?", (key,)
        ).fetchone()
        return KeyValue(row[0], bytes(row[1]), row[2], row[3], row[4]) if row else None

    def _record(self, conn: sqlite3.Connection, kind: EventKind, kv: KeyValue, rev: int) -> None:
        conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            (rev, kind.value, kv.key, kv.value, kv.create_revision, kv.lease),
        )
        conn.execute("DELETE FROM events WHERE revision <= ?", (rev - _HISTORY,))
        self._local.changed = True

    def _delete(self, conn: sqlite3.Connection, key: str) -> None:
        old = self._read(conn, key)
        if old is None:
            return
        rev = self._bump(conn)
        conn.execute("DELETE FROM kv WHERE key = ?", (key,))
        self._record(conn, EventKind.DELETE, old, rev)

    def _put(self, conn: sqlite3.Connection, key: str, value: bytes, lease_id: int) -> KeyValue:
        old = self._read(conn, key)
        rev = self._bump(conn)
        kv = KeyValue(key, value, old.create_revision if old else rev, rev, lease_id)
        conn.execute(
            "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?)",
            (key, value, kv.create_revision, rev, lease_id),
        )
        self._record(conn, EventKind.PUT, kv, rev)
        return kv

    def _lease_alive(self, conn: sqlite3.Connection, lease_id: int) -> bool:
        return conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone() is not None

    # -- start-up ---------------------------------------------------------

    async def claim(self, wait: float) -> None:
        """Make sure this host may use the file. Call once, before the node serves.

        Checks that the file can be written; if another boot stamped it, watches
        it for ``wait`` s at least, and drops that boot's leases only if it wrote
        nothing meanwhile (:mod:`app.store.claim`). Raises StoreUnavailable when
        the file cannot be written or opened (with the system's or SQLite's
        reason), StoreForeignHost when another live host uses it; then nothing
        in the file has changed.
        """
        claim.check_writable(self.path)
        seen = await self._patiently(claim.survey, checked=False)
        if self.boot_id and seen.stamp not in (None, self.boot_id):
            look = partial(self._run, claim.survey, False)
            await claim.watch_other_boot(self.clock, look, seen, wait, self.boot_id, self.path)

            def take_over(conn: sqlite3.Connection) -> None:
                drop = partial(self._drop_lease, conn)
                claim.take_over(conn, seen, self.boot_id, self.path, drop)

            await self._run(take_over, checked=False)
        await self._patiently(lambda conn: None)  # stamps a file that has no stamp

    async def _patiently(self, body: Callable[[sqlite3.Connection], T], checked: bool = True) -> T:
        """:meth:`_run` at start-up, where a lock held by another process is worth waiting
        for: nodes started together on a new file all create its tables and switch it to
        WAL at once, and under load one of them could wait longer than the store timeout
        and exit. Retried while SQLite says busy or locked, for ``_START_PATIENCE`` s."""
        deadline = time.monotonic() + _START_PATIENCE
        for _ in range(int(_START_PATIENCE / _START_RETRY) + 1):
            try:
                return await self._run(body, checked)
            except StoreUnavailable as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(_START_RETRY)
        return await self._run(body, checked)

    # -- the contract -----------------------------------------------------

    async def grant(self, ttl: int) -> LeaseGrant:
        def body(conn: sqlite3.Connection) -> LeaseGrant:
            conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'lease'")
            lease_id = int(conn.execute("SELECT value FROM meta WHERE name='lease'").fetchone()[0])
            conn.execute(
                "INSERT INTO leases VALUES (?, ?, ?)", (lease_id, ttl, self.clock.now() + ttl)
            )
            return LeaseGrant(lease_id, float(ttl))

        return await self._run(body)

    async def keepalive(self, lease_id: int) -> float:
        return await self._run(lambda conn: self._extend(conn, lease_id))

    async def renew(self, lease_id: int, key: str) -> Renewal:
        """The keepalive and the read of ``key`` in one transaction."""

        def body(conn: sqlite3.Connection) -> Renewal:
            ttl = self._extend(conn, lease_id)
            if ttl <= 0:
                return Renewal(0.0)
            return Renewal(ttl, self._read(conn, key), self._revision(conn))

        return await self._run(body)

    def _extend(self, conn: sqlite3.Connection, lease_id: int) -> float:
        """Renew the lease from now; its TTL, or 0.0 when it is gone."""
        row = conn.execute("SELECT ttl FROM leases WHERE id = ?", (lease_id,)).fetchone()
        if row is None:
            return 0.0
        ttl = float(row[0])
        conn.execute(
            "UPDATE leases SET expires_at = ? WHERE id = ?", (self.clock.now() + ttl, lease_id)
        )
        return ttl

    async def revoke(self, lease_id: int) -> None:
        await self._run(lambda conn: self._drop_lease(conn, lease_id))

    async def acquire(
        self,
        key: str,
        value: bytes,
        lease_id: int,
        absent: Sequence[str] = (),
        same: Mapping[str, int] | None = None,
    ) -> AcquireResult:
        def created(conn: sqlite3.Connection, name: str) -> int:
            kv = self._read(conn, name)
            return kv.create_revision if kv is not None else 0

        def body(conn: sqlite3.Connection) -> AcquireResult:
            holder = self._read(conn, key)
            blocked = any(created(conn, k) for k in absent) or any(
                created(conn, k) != rev for k, rev in (same or {}).items()
            )
            gone = lease_id != 0 and not self._lease_alive(conn, lease_id)
            if holder is not None or blocked or gone:
                rev = self._revision(conn)
                return AcquireResult(False, holder.create_revision if holder else 0, holder, rev)
            kv = self._put(conn, key, value, lease_id)
            return AcquireResult(True, kv.create_revision, kv, kv.mod_revision)

        return await self._run(body)

    async def resign(
        self,
        key: str,
        create_revision: int,
        puts: Sequence[Put] = (),
        absent: Sequence[str] = (),
    ) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            kv = self._read(conn, key)
            if kv is None or kv.create_revision != create_revision:
                return False
            if any(self._read(conn, name) is not None for name in absent):
                return False
            for put in puts:
                if put.lease and not self._lease_alive(conn, put.lease):
                    raise _LeaseGone(put.lease)
            self._delete(conn, key)
            for put in puts:
                self._put(conn, put.key, put.value, put.lease)
            return True

        try:
            return await self._run(body)
        except _LeaseGone as exc:
            raise StoreLeaseGone(f"lease {exc.args[0]} not found") from exc

    async def put(self, key: str, value: bytes, lease_id: int) -> None:
        def body(conn: sqlite3.Connection) -> None:
            if lease_id and not self._lease_alive(conn, lease_id):
                raise _LeaseGone(lease_id)
            self._put(conn, key, value, lease_id)

        try:
            await self._run(body)
        except _LeaseGone as exc:
            raise StoreLeaseGone(f"lease {exc.args[0]} not found") from exc

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        return await self._run(lambda conn: (self._read(conn, key), self._revision(conn)))

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        match, params = _matching("key", prefix, prefix=True)

        def body(conn: sqlite3.Connection) -> tuple[list[KeyValue], int]:
            rows = conn.execute(
                "SELECT key, value, create_revision, mod_revision, lease FROM kv "
                f"WHERE {match} ORDER BY key",
                params,
            )
            kvs = [KeyValue(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in rows]
            return kvs, self._revision(conn)

        return await self._run(body)

    async def watch(
        self, key: str, start_revision: int, timeout: float, prefix: bool = False
    ) -> list[WatchEvent]:
        """Wait for events (see the module docstring); ``[]`` on timeout or compacted history."""
        deadline = self.clock.now() + timeout
        match, params = _matching("key", key, prefix)
        match_kv, _ = _matching("kv.key", key, prefix)

        def body(conn: sqlite3.Connection) -> tuple[list[WatchEvent] | None, float | None]:
            oldest = conn.execute("SELECT MIN(revision) FROM events").fetchone()[0]
            if (
                oldest is not None
                and start_revision < oldest
                and start_revision < self._revision(conn) - _HISTORY
            ):
                return None, None
            rows = conn.execute(
                "SELECT revision, kind, key, value, create_revision, lease FROM events "
                f"WHERE {match} AND revision >= ? ORDER BY revision",
                (*params, start_revision),
            ).fetchall()
            expiry = conn.execute(
                "SELECT MIN(leases.expires_at) FROM kv JOIN leases ON leases.id = kv.lease "
                f"WHERE {match_kv}",
                params,
            ).fetchone()[0]
            events = [
                WatchEvent(EventKind(r[1]), KeyValue(r[2], bytes(r[3]), r[4], r[0], r[5]), r[0])
                for r in rows
            ]
            return events, expiry

        wakeups = self._watch_wakeups()
        while True:
            generation = wakeups.generation if wakeups else 0
            events, expiry = await self._run(body)
            if events is None:
                return []
            now = self.clock.now()
            if events or now >= deadline:
                return events
            wait = min(deadline - now, self._quiet if wakeups else _POLL)
            if expiry is not None:
                wait = min(wait, max(0.0, expiry - now) + _EXPIRY_SLACK)
            if wakeups is None:
                await asyncio.sleep(wait)
            else:
                await wakeups.wait(generation, wait)

    @property
    def server_version(self) -> str:
        """``"sqlite <version>"``: the SQLite library this process links."""
        return f"sqlite {sqlite3.sqlite_version}"

    def _watch_wakeups(self) -> Wakeups | None:
        if not self._listened:
            self._listened = True
            self._wakeups = self._wake.listen()
        return self._wakeups

    async def close(self) -> None:
        """Close the connection after any call still running, on the worker. Safe twice."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await asyncio.get_running_loop().run_in_executor(worker, self._close_connections)
            worker.shutdown(wait=False)
        self._close_connections()
        if self._wakeups is not None:
            self._wakeups.close()
        self._wake.close()

    def _close_connections(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


class _LeaseGone(Exception):
    pass
