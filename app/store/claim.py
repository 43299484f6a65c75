"""Whether this host may use the embedded store's file, decided before a node serves.

First :func:`check_writable` makes a real write: a state directory that exists
but cannot be written would otherwise keep the node negative for ever, each
call failing with SQLite's "unable to open database file".

Lease deadlines in the file are instants of ``CLOCK_BOOTTIME``: one clock for
every process of one boot of one host, meaningless anywhere else. So the file
is stamped with the boot that uses it (``/proc/sys/kernel/random/boot_id``),
and every transaction first checks the stamp (:func:`check_stamp`). A file
without a stamp (new, or from an older vipmon) takes this boot's, and nothing
in it is dropped, so an upgrade never drops the lease of a node still running.

**Another boot's stamp** means one of two things, and the stamp cannot tell
which: this host rebooted (the old leases are dead, and must go, or a dead
leader key would block the cluster for about one old uptime), or another host
shares the directory (NFS; two sandboxes, VMs or a restored clone on one
volume), whose leases are alive: dropping them makes two masters. A machine
id would not tell either (a clone keeps it; containers of one host may have
none, or different ones). So a node decides by liveness before it serves
(:meth:`app.store.local.LocalStore.claim`): it watches the file, writing
nothing, for the longest lease TTL in it (at least its own TTL).

* If that boot changes anything meanwhile (a renewal, a grant, any write), it
  is alive: the node refuses to start with :class:`app.errors.StoreForeignHost`.
* If nothing changes, that boot is dead. A master of it is positive until at
  most one TTL (less its margin) after it sent its last renewal; that renewal
  was written before the watch began, so by its end the master is negative.
  Its leases go, with the keys bound to them,
  in one transaction that first checks the file is still as watched, and the
  file takes this boot's stamp. Nodes of this boot started together all watch;
  one takes the file over and the others find this boot's stamp and go on.

**A node already running** that finds another boot's stamp (another host
took the file over while every node here was frozen for longer than a TTL)
drops nothing and writes nothing: every call raises ``StoreForeignHost``, so
the node stays negative, and its log says why, until it is stopped. Its
masters were negative already: the other host could take the file over only
after a whole TTL without a write from here. (A vipmon older than this check
on another host drops every lease at its first call; nothing here prevents
that.)

**What this cannot detect**: another host that writes nothing during the whole
watch (every node of it frozen): safe, since its masters are negative by then
and stay so when they resume; and a file system whose locks and shared memory
do not reach across hosts (NFS and most network file systems, where SQLite's
own locking is not reliable either): there the other host's writes may never
be seen. The embedded store is for one host.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from app.clock import Clock
from app.errors import StoreForeignHost, StoreUnavailable

log = logging.getLogger("vipmon.store")

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_POLL = 0.1  # s between looks at a file stamped by another boot
_SLACK = 0.25  # s of watch beyond the longest TTL
ONE_HOST = (
    "the embedded store is for one host: give each host its own state directory, "
    "or use etcd for nodes on several hosts"
)


def current_boot_id() -> str:
    """This boot's id, or "" where the system does not tell (then no boot check)."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def check_writable(db: Path) -> None:
    """Create and remove a file beside ``db``, and open ``db`` and its journals to write.

    Real writes, not ``os.access``: root passes every permission check, and a
    read-only mount fails only when written. Raises StoreUnavailable carrying
    the system's reason ("Permission denied", "Read-only file system").
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".vipmon-check-", dir=db.parent)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create a file in {db.parent}: {exc.strerror or exc}"
        ) from exc
    os.close(fd)
    os.unlink(name)
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class Survey:
    """What a live boot changes in the file: the stamp, the leases, the counters."""

    stamp: str | None
    leases: tuple[tuple[int, float, float], ...]  # (id, ttl, expires_at)
    counters: tuple[tuple[str, int], ...]  # the revision and the last lease id

    @property
    def longest_ttl(self) -> float:
        return max((ttl for _, ttl, _ in self.leases), default=0.0)


def survey(conn: sqlite3.Connection) -> Survey:
    """Read the file's :class:`Survey` (inside the caller's transaction)."""
    row = conn.execute("SELECT id FROM boot").fetchone()
    leases = conn.execute("SELECT id, ttl, expires_at FROM leases ORDER BY id").fetchall()
    counters = conn.execute("SELECT name, value FROM meta ORDER BY name").fetchall()
    return Survey(
        str(row[0]) if row is not None else None,
        tuple((int(i), float(t), float(e)) for i, t, e in leases),
        tuple((str(n), int(v)) for n, v in counters),
    )


def stamp(conn: sqlite3.Connection, boot_id: str) -> None:
    """Stamp the file with ``boot_id`` (inside the caller's transaction)."""
    conn.execute("DELETE FROM boot")
    conn.execute("INSERT INTO boot VALUES (?)", (boot_id,))


def check_stamp(conn: sqlite3.Connection, boot_id: str, path: Path) -> None:
    """Raise StoreForeignHost unless the file is this boot's; stamp a file that has none.

    Called first in every transaction, so that nothing of another boot is swept.
    ``boot_id`` "" (unknown) checks nothing.
    """
    if not boot_id:
        return
    row = conn.execute("SELECT id FROM boot").fetchone()
    if row is None:
        stamp(conn, boot_id)
    elif row[0] != boot_id:
        raise StoreForeignHost(
            f"{path} is stamped by another boot ({row[0]}): another host uses this state "
            f"directory. This node drops nothing of it and stays negative; {ONE_HOST}"
        )


async def watch_other_boot(
    clock: Clock,
    look: Callable[[], Awaitable[Survey]],
    seen: Survey,
    wait: float,
    boot_id: str,
    path: Path,
) -> None:
    """Watch a file ``seen`` stamped by another boot, for the longest TTL in it, ``wait`` at least.

    Returns when that boot wrote nothing for the whole watch (it is gone), or
    when the file took ``boot_id``'s stamp (another process of this boot took
    it over meanwhile). Raises StoreForeignHost when that boot changed anything
    in the file (it is alive), and StoreError when the file cannot be read.
    """
    period = max(wait, seen.longest_ttl) + _SLACK
    log.warning(
        "%s was last used by boot %s: watching it for %.1f s to tell a reboot of this host "
        "(nothing renewed) from another host sharing it (renewals go on)",
        path,
        seen.stamp,
        period,
    )
    deadline = clock.now() + period
    for _ in range(2 * math.ceil(period / _POLL) + 10):
        left = deadline - clock.now()
        if left <= 0:
            return
        await clock.sleep(min(_POLL, left))
        now = await look()
        if now.stamp == boot_id:
            return
        if now != seen:
            raise StoreForeignHost(
                f"{path} is in use by another host: boot {seen.stamp} wrote to it while this "
                f"node watched for {period:.1f} s; {ONE_HOST}"
            )
    raise StoreForeignHost(f"{path}: could not watch boot {seen.stamp} to the end; {ONE_HOST}")


def take_over(
    conn: sqlite3.Connection,
    seen: Survey,
    boot_id: str,
    path: Path,
    drop: Callable[[int], None],
) -> None:
    """Drop ``seen``'s leases with ``drop`` and stamp ``boot_id``, if the file is still ``seen``.

    Inside the caller's transaction, after :func:`watch_other_boot` returned.
    Does nothing when the file has ``boot_id``'s stamp already (another process
    of this boot took it over); raises StoreForeignHost when it changed.
    """
    now = survey(conn)
    if now.stamp == boot_id:
        return
    if now != seen:
        raise StoreForeignHost(
            f"{path} is in use by another host: boot {seen.stamp} wrote to it just now; {ONE_HOST}"
        )
    for lease_id, _, _ in seen.leases:
        drop(lease_id)
    stamp(conn, boot_id)
    log.warning(
        "%s: boot %s renewed nothing while watched, so it is gone (this host rebooted): "
        "dropped its %d lease(s) and the keys bound to them",
        path,
        seen.stamp,
        len(seen.leases),
    )
