"""The coordination store contract.

A store keeps keys with values, leases with a TTL, and a revision counter,
with the semantics of etcd v3. Every backend module (``etcd``, ``local``,
``memory``) implements :class:`Store` and nothing more.

Contract, for every method:

* **Atomic.** Each call is one atomic step in the store. ``acquire`` and
  ``resign`` are compare-and-set transactions (``resign`` may write other keys in
  its transaction: a switchover's record goes in with the old term's delete).
* **A lost race is a return value**, never an exception: ``acquire`` returns
  ``won=False`` with the current holder, ``resign`` returns ``False``.
* **An unreachable store raises** a :class:`app.errors.StoreError`
  (``StoreUnavailable``, ``StoreNoLeader``, ``StoreAuthError`` or
  ``StoreProtocolError``). When a call raises, the caller cannot tell whether
  it took effect. Nothing else may escape; anything else is a bug.
* **Leases.** A key written with a lease is deleted by the store no earlier
  than ``ttl`` seconds after the last grant or keepalive that the store
  processed. ``keepalive`` returns the TTL the store granted, or ``0`` when
  the lease is gone. The caller takes its own ``t_send`` before the call.
* **Revisions.** Every write bumps a store-wide revision. A key's
  ``create_revision`` is unique to the write that created it and only grows;
  it is the election term. Every read (``get``, ``get_prefix``) reports the
  revision it saw: of two reads, the one with the higher revision is newer.
* **Values are bytes**; interpreting them is the caller's job, and garbage
  must not make a store method raise.
* **The server's version** (:attr:`Store.server_version`) is what the backend
  last learnt in its own calls; reading it does no I/O and never raises.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KeyValue:
    """One key as the store holds it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True)
class LeaseGrant:
    """A lease the store granted: its id and the TTL in seconds it chose."""

    lease_id: int
    ttl: float


@dataclass(frozen=True)
class AcquireResult:
    """The outcome of a create-if-absent transaction.

    ``won`` with ``create_revision`` (the term) when our put went in;
    otherwise ``holder`` is the key as found (``None`` if it vanished between
    compare and read) and ``revision`` the store revision to watch after.
    """

    won: bool
    create_revision: int
    holder: KeyValue | None
    revision: int


@dataclass(frozen=True)
class Renewal:
    """What :meth:`Store.renew` learnt: the TTL granted (0: the lease is gone), and the key
    it was asked to read as read after the renewal, at store ``revision`` (0: not read)."""

    ttl: float
    key: KeyValue | None = None
    revision: int = 0


@dataclass(frozen=True)
class Put:
    """One key that :meth:`Store.resign` writes in its transaction, bound to ``lease``
    (0: to none)."""

    key: str
    value: bytes
    lease: int = 0


class EventKind(enum.StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True)
class WatchEvent:
    """A change to a watched key. ``kv`` is the new value, or the old one on delete."""

    kind: EventKind
    kv: KeyValue
    revision: int


class Store(abc.ABC):
    """A coordination store. See the module docstring for the contract."""

    name: str = "store"

    @property
    def server_version(self) -> str:
        """The store server's name and version as last read (``"etcd 3.4.23"``,
        ``"sqlite 3.40.1"``), or "" when not known (yet).

        No I/O: a backend learns it in its own calls (etcd reads ``GET /version``
        before its first call and again after a failed endpoint).
        """
        return ""

    @abc.abstractmethod
    async def grant(self, ttl: int) -> LeaseGrant:
        """Create a lease of ``ttl`` seconds. The store may raise the TTL."""

    @abc.abstractmethod
    async def keepalive(self, lease_id: int) -> float:
        """Renew a lease once. Return the granted TTL, or 0.0 if the lease is gone."""

    async def renew(self, lease_id: int, key: str) -> Renewal:
        """:meth:`keepalive`, then a read of ``key`` (as :meth:`get`); nothing is read when
        the lease is gone. A backend may do both in one step: etcd reads ``key`` as the
        keepalive's confirming quorum read, so the read costs no request of its own."""
        ttl = await self.keepalive(lease_id)
        if ttl <= 0:
            return Renewal(0.0)
        kv, revision = await self.get(key)
        return Renewal(ttl, kv, revision)

    @abc.abstractmethod
    async def revoke(self, lease_id: int) -> None:
        """Drop a lease and every key bound to it. Revoking a gone lease is not an error."""

    @abc.abstractmethod
    async def acquire(
        self,
        key: str,
        value: bytes,
        lease_id: int,
        absent: Sequence[str] = (),
        same: Mapping[str, int] | None = None,
    ) -> AcquireResult:
        """Put ``key`` bound to ``lease_id`` only if it and every key in ``absent`` do not exist.

        ``lease_id`` 0 binds the key to no lease: it stays until deleted.

        Each key in ``same`` must exist with exactly the given ``create_revision``
        (the very record the caller read, not a newer one). A guard that fails
        makes the acquire lose with ``holder`` set to the current ``key`` (or
        None): blocked, not held.
        """

    @abc.abstractmethod
    async def resign(
        self,
        key: str,
        create_revision: int,
        puts: Sequence[Put] = (),
        absent: Sequence[str] = (),
    ) -> bool:
        """Delete ``key`` only if its create_revision is still ours and no key in
        ``absent`` exists; in the same transaction, write each of ``puts``. True if it
        deleted (and wrote); False, changing nothing, if a guard failed.

        A put bound to a lease the store no longer knows raises ``StoreLeaseGone``,
        and nothing changes.
        """

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, lease_id: int) -> None:
        """Write ``key`` unconditionally, bound to ``lease_id`` (0 for none)."""

    @abc.abstractmethod
    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        """Return the key (or None) and the store revision of the read."""

    @abc.abstractmethod
    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Return every key that starts with ``prefix``, sorted by key, and the store
        revision of the read (as :meth:`get`): a caller that keeps state built from
        reads lets only a read of a newer revision replace it."""

    @abc.abstractmethod
    async def watch(
        self, key: str, start_revision: int, timeout: float, prefix: bool = False
    ) -> list[WatchEvent]:
        """Wait up to ``timeout`` s for changes to ``key`` at or after ``start_revision``.

        With ``prefix``, changes to every key that starts with ``key``.

        Returns the first batch of events, or ``[]`` when the time ran out or
        the history was compacted (the caller then re-reads the key). Events
        may arrive late or twice; callers must treat them as hints and let
        transactions decide.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""
