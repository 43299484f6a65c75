"""The etcd v3 backend, spoken through etcd's JSON gateway (no gRPC).

Each method is one POST (``watch`` is one streamed POST); the transport,
failover, auth and error mapping live in :mod:`app.store.etcd_client`.
What this module knows is the shape of etcd's replies, as etcd 3.4 sends them:
keys and values are standard base64, int64 fields are JSON strings, and
fields that are zero, false or empty are left out, so a lost compare has no
``succeeded`` key and an expired lease's keepalive has no ``TTL``.

Only :mod:`app.errors` exceptions leave this module. A reply that is not the
JSON we expect raises ``StoreProtocolError``; a value that is garbage is just
bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from app.errors import StoreLeaseGone, StoreProtocolError, StoreUnavailable
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
from app.store.etcd_client import EtcdClient, EtcdReplyError, JSONObject
from app.store.http1 import Transport


def b64(data: bytes | str) -> str:
    """Standard base64 of ``data`` (a str is encoded as UTF-8 first)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with ``prefix``": last byte + 1."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # no upper bound: every key


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise StoreProtocolError(f"{what} is not a base64 string: {value!r:.80}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StoreProtocolError(f"{what} is not valid base64: {value!r:.80}") from exc


def _int64(obj: JSONObject, field: str) -> int:
    """An int64 field: a JSON string (or number); absent means 0."""
    value = obj.get(field, 0)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise StoreProtocolError(f"field {field!r} is not an int64: {value!r:.80}")
    try:
        return int(value)
    except ValueError as exc:
        raise StoreProtocolError(f"field {field!r} is not an int64: {value!r:.80}") from exc


def _object(obj: Any, field: str) -> JSONObject:
    value = obj.get(field) if isinstance(obj, dict) else None
    if not isinstance(value, dict):
        raise StoreProtocolError(f"etcd reply has no object {field!r}")
    return value


def _list(obj: JSONObject, field: str) -> list[Any]:
    value = obj.get(field, [])
    if not isinstance(value, list):
        raise StoreProtocolError(f"field {field!r} is not a list")
    return value


def _revision(reply: JSONObject) -> int:
    return _int64(_object(reply, "header"), "revision")


def _keyvalue(obj: Any) -> KeyValue:
    if not isinstance(obj, dict):
        raise StoreProtocolError(f"key-value is not an object: {obj!r:.80}")
    return KeyValue(
        key=_unb64(obj.get("key"), "key").decode("utf-8", "replace"),
        value=_unb64(obj.get("value", ""), "value"),
        create_revision=_int64(obj, "create_revision"),
        mod_revision=_int64(obj, "mod_revision"),
        lease=_int64(obj, "lease"),
    )


def _event(obj: Any) -> WatchEvent:
    if not isinstance(obj, dict):
        raise StoreProtocolError(f"watch event is not an object: {obj!r:.80}")
    kind = obj.get("type", "PUT")
    current = _keyvalue(obj.get("kv"))
    if kind == "PUT":
        return WatchEvent(EventKind.PUT, current, current.mod_revision)
    if kind == "DELETE":
        before = obj.get("prev_kv")
        old = _keyvalue(before) if before is not None else current
        return WatchEvent(EventKind.DELETE, old, current.mod_revision)
    raise StoreProtocolError(f"unknown watch event type {kind!r:.40}")


def _created_at(guards: list[tuple[str, int]]) -> list[JSONObject]:
    """A txn's compares: each key's ``create_revision`` equals the given one (0: absent)."""
    return [
        {
            "target": "CREATE",
            "result": "EQUAL",
            "key": b64(name),
            "create_revision": str(revision),
        }
        for name, revision in guards
    ]


class EtcdStore(Store):
    """A :class:`Store` on etcd v3 through its JSON gateway.

    ``endpoints`` are client URLs (``http://host:2379``); a call moves to the
    next endpoint on a connect error, a timeout or a 5xx, tries each at most
    once, then raises ``StoreUnavailable`` (``StoreNoLeader`` if the last one
    said "no leader"). ``timeout`` bounds each call as a whole, every endpoint
    tried included; keep it well under the lease TTL. ``confirm_key`` is the
    key a keepalive's confirming quorum read counts (any key the credentials
    may read; vipmon passes its leader key). With ``username`` the store authenticates and
    renews its token once per call when etcd rejects it; refused credentials
    raise ``StoreAuthError``. ``ca_file`` verifies the server, ``cert_file``
    and ``key_file`` are the client certificate. ``transport`` is the test
    seam: any :class:`app.store.http1.Transport` instead of the connection pool.

    The constructor raises :class:`app.errors.SettingsError` when there is no
    endpoint or a TLS file cannot be loaded; it does no I/O.
    """

    name = "etcd"

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        transport: Transport | None = None,
        confirm_key: str = "/vipmon/",
    ) -> None:
        self._confirm_key = confirm_key
        self._etcd = EtcdClient(
            endpoints,
            timeout=timeout,
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            transport=transport,
        )

    @property
    def server_version(self) -> str:
        """``"etcd <version>"`` as ``GET /version`` last said, "" before it answered."""
        version = self._etcd.server_version
        return f"etcd {version}" if version else ""

    async def grant(self, ttl: int) -> LeaseGrant:
        """``/lease/grant``. etcd may raise the TTL (its minimum is about 2 s)."""
        reply = await self._etcd.call("/lease/grant", {"TTL": int(ttl)})
        lease_id, granted = _int64(reply, "ID"), _int64(reply, "TTL")
        if lease_id == 0 or granted <= 0:
            raise StoreProtocolError(f"lease grant reply without ID or TTL: {reply!r:.200}")
        return LeaseGrant(lease_id, float(granted))

    async def keepalive(self, lease_id: int) -> float:
        """One ``/lease/keepalive``, confirmed by a quorum read. No TTL (expired): 0.0.

        An etcd leader that has lost its quorum goes on accepting keepalives
        for up to about two election timeouts, while a linearizable read on it
        fails at once. So once the keepalive has answered, a linearizable
        ``/kv/range`` (count only, of ``confirm_key``) goes to the same member,
        and the renewal counts only if it succeeds with the same ``raft_term``
        in its header: then a quorum of that term stood behind the member
        after the keepalive was sent. Otherwise ``StoreUnavailable`` is raised
        and the caller's deadline does not move. An expired lease needs no
        confirmation: losing it is always safe.
        """
        ttl, _ = await self._confirmed(
            lease_id, {"key": b64(self._confirm_key), "count_only": True}
        )
        return ttl

    async def renew(self, lease_id: int, key: str) -> Renewal:
        """:meth:`keepalive` whose confirming quorum read is a read of ``key``: the key as
        a quorum of the renewal's raft term had it, for no request of its own."""
        ttl, confirmed = await self._confirmed(lease_id, {"key": b64(key)})
        if confirmed is None:
            return Renewal(0.0)
        kvs = _list(confirmed, "kvs")
        return Renewal(ttl, _keyvalue(kvs[0]) if kvs else None, _revision(confirmed))

    async def _confirmed(self, lease_id: int, read: JSONObject) -> tuple[float, JSONObject | None]:
        """The keepalive and its confirming ``/kv/range`` of ``read``, on one member; the
        TTL and the read's reply (None when the lease is gone: nothing to confirm)."""
        renewed, confirmed = await self._etcd.call_pair(
            ("/lease/keepalive", {"ID": str(lease_id)}), ("/kv/range", read)
        )
        result = _object(renewed, "result")
        ttl = float(max(_int64(result, "TTL"), 0))
        if ttl <= 0:
            return 0.0, None
        renewed_term = _int64(_object(result, "header"), "raft_term")
        read_term = _int64(_object(confirmed, "header"), "raft_term")
        if renewed_term == 0 or renewed_term != read_term:
            raise StoreUnavailable(
                f"keepalive not confirmed by a quorum read (raft term {renewed_term}, "
                f"read in term {read_term})"
            )
        return ttl, confirmed

    async def revoke(self, lease_id: int) -> None:
        """``/lease/revoke``; etcd's "lease not found" counts as done."""
        try:
            await self._etcd.call("/lease/revoke", {"ID": str(lease_id)})
        except EtcdReplyError as exc:
            if not exc.lease_not_found:
                raise

    async def acquire(
        self,
        key: str,
        value: bytes,
        lease_id: int,
        absent: Sequence[str] = (),
        same: Mapping[str, int] | None = None,
    ) -> AcquireResult:
        """One txn: if ``key`` and each ``absent`` key have create_revision 0, and each
        ``same`` key has the given create_revision, put; else read.

        Losing returns the holder and the holder's create_revision. A lease
        that etcd no longer knows also loses (then the key is read separately).
        """
        k = b64(key)
        put: JSONObject = {"key": k, "value": b64(value)}
        if lease_id:
            put["lease"] = str(lease_id)
        guards = [(name, 0) for name in (key, *absent)] + list((same or {}).items())
        body = {
            "compare": _created_at(guards),
            "success": [{"request_put": put}],
            "failure": [{"request_range": {"key": k}}],
        }
        try:
            reply = await self._etcd.call("/kv/txn", body)
        except EtcdReplyError as exc:
            if not exc.lease_not_found:
                raise
            holder, revision = await self.get(key)
            return self._lost(holder, revision)
        revision = _revision(reply)
        if reply.get("succeeded") is True:
            ours = KeyValue(key, value, revision, revision, lease_id)
            return AcquireResult(True, revision, ours, revision)
        holder = None
        for response in _list(reply, "responses"):
            kvs = _list(_object(response, "response_range"), "kvs")
            holder = _keyvalue(kvs[0]) if kvs else None
        return self._lost(holder, revision)

    @staticmethod
    def _lost(holder: KeyValue | None, revision: int) -> AcquireResult:
        return AcquireResult(False, holder.create_revision if holder else 0, holder, revision)

    async def resign(
        self,
        key: str,
        create_revision: int,
        puts: Sequence[Put] = (),
        absent: Sequence[str] = (),
    ) -> bool:
        """One txn: if ``key``'s create_revision equals ours and each ``absent`` key has
        create_revision 0, delete ``key`` and put each of ``puts``. True if it deleted."""
        k = b64(key)
        guards = [(key, create_revision)] + [(name, 0) for name in absent]
        writes: list[JSONObject] = [{"request_delete_range": {"key": k}}]
        for put in puts:
            request: JSONObject = {"key": b64(put.key), "value": b64(put.value)}
            if put.lease:
                request["lease"] = str(put.lease)
            writes.append({"request_put": request})
        body = {"compare": _created_at(guards), "success": writes}
        try:
            reply = await self._etcd.call("/kv/txn", body)
        except EtcdReplyError as exc:
            if exc.lease_not_found:
                raise StoreLeaseGone(f"a lease of {[p.key for p in puts]} not found") from exc
            raise
        if reply.get("succeeded") is not True:
            return False
        responses = _list(reply, "responses")
        deleted = sum(
            _int64(_object(r, "response_delete_range"), "deleted")
            for r in responses
            if "response_delete_range" in r
        )
        return deleted > 0

    async def put(self, key: str, value: bytes, lease_id: int) -> None:
        """``/kv/put``. A lease etcd no longer knows raises ``StoreLeaseGone``."""
        body: JSONObject = {"key": b64(key), "value": b64(value)}
        if lease_id:
            body["lease"] = str(lease_id)
        try:
            await self._etcd.call("/kv/put", body)
        except EtcdReplyError as exc:
            if exc.lease_not_found:
                raise StoreLeaseGone(f"lease {lease_id} not found") from exc
            raise

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        """``/kv/range`` of one key: the key (or None) and the header revision."""
        reply = await self._etcd.call("/kv/range", {"key": b64(key)})
        kvs = _list(reply, "kvs")
        return (_keyvalue(kvs[0]) if kvs else None), _revision(reply)

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """``/kv/range`` from ``prefix`` to ``prefix`` with its last byte + 1, sorted by key."""
        raw = prefix.encode("utf-8")
        body = {
            "key": b64(raw if raw else b"\x00"),
            "range_end": b64(prefix_range_end(raw)),
            "sort_order": "ASCEND",
            "sort_target": "KEY",
        }
        reply = await self._etcd.call("/kv/range", body)
        kvs = [_keyvalue(item) for item in _list(reply, "kvs")]
        # Code-point order is UTF-8 byte order.
        return sorted(kvs, key=lambda kv: kv.key), _revision(reply)

    async def watch(
        self, key: str, start_revision: int, timeout: float, prefix: bool = False
    ) -> list[WatchEvent]:
        """Watch ``key`` (or the prefix) from ``start_revision``, with ``prev_kv``, ``timeout`` s.

        Returns the first batch of events; a DELETE carries the old key-value
        when etcd sent ``prev_kv``. Returns ``[]`` when the time ran out or
        etcd canceled the watch (compacted history included). Raises
        ``StoreUnavailable`` when no endpoint created the watch.
        """
        request: JSONObject = {
            "key": b64(key),
            "start_revision": str(max(start_revision, 0)),
            "prev_kv": True,
        }
        if prefix:
            request["range_end"] = b64(prefix_range_end(key.encode()))
        body = {"create_request": request}
        result = await self._etcd.watch(body, timeout)
        if result is None or result.get("canceled") or result.get("compact_revision"):
            return []
        return [_event(e) for e in _list(result, "events")]

    async def close(self) -> None:
        """Close the HTTP connections. Safe to call twice."""
        await self._etcd.close()
