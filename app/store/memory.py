"""An in-memory store on an injectable clock: the test seam for the election.

It keeps etcd's semantics (revisions, leases, create-if-absent) in one
process, shared by every node object that holds it. Faults are injected by
the test through :meth:`MemoryStore.fail_next`; nothing is patched.
Lease expiry happens at the first call after the deadline, as a lazy sweep,
exactly ``ttl`` after the last grant or keepalive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from app.clock import Clock
from app.errors import StoreError, StoreLeaseGone, StoreUnavailable
from app.store.base import (
    AcquireResult,
    EventKind,
    KeyValue,
    LeaseGrant,
    Put,
    Store,
    WatchEvent,
)


@dataclass
class _Lease:
    ttl: float
    expires_at: float


class MemoryData:
    """The shared state: one per simulated cluster."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.revision = 1
        self.next_lease = 1000
        self.keys: dict[str, KeyValue] = {}
        self.leases: dict[int, _Lease] = {}
        self.history: list[WatchEvent] = []
        #: Whether delete events carry the old value (see :meth:`delete`).
        self.prev_kv = True

    def sweep(self) -> None:
        now = self.clock.now()
        for lease_id in [i for i, lease in self.leases.items() if lease.expires_at <= now]:
            self.drop_lease(lease_id)

    def drop_lease(self, lease_id: int) -> None:
        self.leases.pop(lease_id, None)
        for key in [k for k, kv in self.keys.items() if kv.lease == lease_id]:
            self.delete(key)

    def delete(self, key: str, prev_kv: bool | None = None) -> None:
        """Delete ``key``. Without ``prev_kv`` (by default :attr:`prev_kv`) its event
        carries no old value, as etcd's does when the previous revision was compacted
        (``create_revision`` 0)."""
        old = self.keys.pop(key)
        self.revision += 1
        if not (self.prev_kv if prev_kv is None else prev_kv):
            old = KeyValue(key, b"", 0, self.revision)
        self.history.append(WatchEvent(EventKind.DELETE, old, self.revision))

    def put(self, key: str, value: bytes, lease_id: int) -> KeyValue:
        self.revision += 1
        old = self.keys.get(key)
        created = old.create_revision if old else self.revision
        kv = KeyValue(key, value, created, self.revision, lease_id)
        self.keys[key] = kv
        self.history.append(WatchEvent(EventKind.PUT, kv, self.revision))
        return kv


class MemoryStore(Store):
    """One node's handle on a :class:`MemoryData`."""

    name = "memory"

    def __init__(self, data: MemoryData) -> None:
        self.data = data
        self._faults: list[StoreError] = []
        self.calls: list[str] = []
        #: Called with the operation name before each call: a seam for latency
        #: (advance a fake clock) or for interleaving other nodes' steps.
        self.on_call: Callable[[str], None] | None = None

    def fail_next(self, error: StoreError | None = None, count: int = 1) -> None:
        """Make the next ``count`` calls raise ``error`` (default StoreUnavailable)."""
        self._faults.extend([error or StoreUnavailable("injected fault")] * count)

    def _enter(self, call: str) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        if self._faults:
            raise self._faults.pop(0)
        self.data.sweep()

    async def grant(self, ttl: int) -> LeaseGrant:
        self._enter("grant")
        self.data.next_lease += 1
        lease_id = self.data.next_lease
        self.data.leases[lease_id] = _Lease(float(ttl), self.data.clock.now() + ttl)
        return LeaseGrant(lease_id, float(ttl))

    async def keepalive(self, lease_id: int) -> float:
        self._enter("keepalive")
        lease = self.data.leases.get(lease_id)
        if lease is None:
            return 0.0
        lease.expires_at = self.data.clock.now() + lease.ttl
        return lease.ttl

    async def revoke(self, lease_id: int) -> None:
        self._enter("revoke")
        if lease_id in self.data.leases:
            self.data.drop_lease(lease_id)

    async def acquire(
        self,
        key: str,
        value: bytes,
        lease_id: int,
        absent: Sequence[str] = (),
        same: Mapping[str, int] | None = None,
    ) -> AcquireResult:
        self._enter("acquire")
        holder = self.data.keys.get(key)
        blocked = any(k in self.data.keys for k in absent) or any(
            getattr(self.data.keys.get(k), "create_revision", 0) != rev
            for k, rev in (same or {}).items()
        )
        if holder is not None or blocked or (lease_id and lease_id not in self.data.leases):
            return AcquireResult(
                False, holder.create_revision if holder else 0, holder, self.data.revision
            )
        kv = self.data.put(key, value, lease_id)
        return AcquireResult(True, kv.create_revision, kv, self.data.revision)

    async def resign(
        self,
        key: str,
        create_revision: int,
        puts: Sequence[Put] = (),
        absent: Sequence[str] = (),
    ) -> bool:
        self._enter("resign")
        kv = self.data.keys.get(key)
        if kv is None or kv.create_revision != create_revision:
            return False
        if any(name in self.data.keys for name in absent):
            return False
        for put in puts:
            if put.lease and put.lease not in self.data.leases:
                raise StoreLeaseGone(f"lease {put.lease} not found")
        self.data.delete(key)
        for put in puts:
            self.data.put(put.key, put.value, put.lease)
        return True

    async def put(self, key: str, value: bytes, lease_id: int) -> None:
        self._enter("put")
        if lease_id and lease_id not in self.data.leases:
            raise StoreLeaseGone(f"lease {lease_id} not found")
        self.data.put(key, value, lease_id)

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        self._enter("get")
        return self.data.keys.get(key), self.data.revision

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._enter("get_prefix")
        kvs = [kv for k, kv in sorted(self.data.keys.items()) if k.startswith(prefix)]
        return kvs, self.data.revision

    async def watch(
        self, key: str, start_revision: int, timeout: float, prefix: bool = False
    ) -> list[WatchEvent]:
        """Return the events already recorded; never waits (time is the test's)."""
        self._enter("watch")
        await asyncio.sleep(0)
        return [
            replace(e)
            for e in self.data.history
            if (e.kv.key.startswith(key) if prefix else e.kv.key == key)
            and e.revision >= start_revision
        ]
