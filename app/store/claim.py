"""Whether this host may use the embedded store's file, checked before a node serves.

A state directory that exists but cannot be written would otherwise keep the
node negative for ever, each store call failing with SQLite's "unable to open
database file"; :func:`check_writable` finds it at start, with the system's
reason.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from app.errors import StoreUnavailable


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
