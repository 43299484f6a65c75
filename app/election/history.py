"""The cluster's history: one record per term, kept in the store.

Each term has up to two keys under ``/vipmon/<cluster>/history/<term>/``:

* ``begin``: written by the node that won the term, once it answered positive:
  its id, URL and when it turned positive (``began``).
* ``end``: how and when the term ended. Written by whoever learns it first,
  with a create-if-absent transaction, so the first account stands:

  - the master itself, for a planned release (switchover, maintenance,
    SIGTERM, a failing check, failback), *before* it deletes the leader key:
    any later winner finds it;
  - the master itself when it lost its lease or its key (``lease lost``);
  - the winner of the next term, when it found no end record: the lease ran
    out (``lease expired``), as after a crash. Its ``ended`` is when it saw the
    key go, which is late: it adds ``ended_earliest`` (:func:`earliest_end`),
    so that the gap before its own term is a range that bounds the outage.

Nothing here is on the probe path: records are written by the election's
history loop and by the release protocol, and read into memory (the
:class:`History`), from which ``GET /history`` answers. At most
:data:`HISTORY_MAX` terms are kept; the winner of a term prunes the oldest.
Times are wall-clock seconds of the node that wrote them, so a gap between
two nodes' records carries their clock skew.

Parsing never raises: a value that is not our JSON is left out (and logged by
the caller).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from app.election.records import json_object, wall_time
from app.role import TermRecord
from app.store.base import KeyValue

#: The most terms kept in the store and in memory.
HISTORY_MAX = 1000

#: How a term ended, as ``how`` says it.
SWITCHOVER = "switchover"
MAINTENANCE = "maintenance"
RESIGNED = "resigned"
CHECK_FAILING = "check failing"
FAILBACK = "failback"
LEASE_EXPIRED = "lease expired"
LEASE_LOST = "lease lost"
RELEASED = "released"

#: Seconds a store may take past a lease's TTL to delete its keys (etcd's lessor
#: looks for expired leases every 500 ms; the embedded store is exact).
EXPIRY_SLACK = 0.5

_TERM_DIGITS = 20  # zero-padded, so that keys sort by term
_KEY = re.compile(rf"(\d{{{_TERM_DIGITS}}})/(begin|end)$")


def history_prefix(cluster: str) -> str:
    return f"/vipmon/{cluster}/history/"


def begin_key(cluster: str, term: int) -> str:
    return f"{history_prefix(cluster)}{term:0{_TERM_DIGITS}d}/begin"


def end_key(cluster: str, term: int) -> str:
    return f"{history_prefix(cluster)}{term:0{_TERM_DIGITS}d}/end"


@dataclass(frozen=True)
class Ending:
    """Why a master gives up its term: ``how`` (one of the names above) and a target."""

    how: str = RELEASED
    to: str | None = None

    def text(self) -> str:
        return f"{self.how} to {self.to}" if self.to else self.how


@dataclass(frozen=True)
class TermBegin:
    term: int
    node_id: str
    url: str
    began: float


def earliest_end(seen: float | None, ttl: float, began: float | None) -> float | None:
    """The earliest instant a master whose lease ran out can have last answered positive.

    ``seen``: when the next master saw its key deleted (None if it did not see
    it go); ``ttl``: the lease TTL; ``began``: when that term turned positive.
    The store deletes a key no earlier than the TTL after the last renewal it
    took (and at most :data:`EXPIRY_SLACK` later), and the master was positive
    when it sent that renewal, so it was positive until ``seen - ttl - slack``
    at least; and never before its term began. None when neither is known.
    An etcd leader election in between lengthens leases: the outage can then
    be longer still.
    """
    bounds = (seen - ttl - EXPIRY_SLACK if seen is not None else None, began)
    known = [t for t in bounds if t is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class TermEnd:
    """How a term ended. ``ended_earliest``: only for a term whose lease ran out, the
    earliest its master can have stopped answering positive (``ended`` is when the
    next master saw the key go, later than the real end)."""

    term: int
    node_id: str
    url: str
    ended: float
    how: str
    to: str | None
    detail: str
    by: str
    ended_earliest: float | None = None

    def text(self) -> str:
        return Ending(self.how, self.to).text()


def encode_begin(record: TermBegin) -> bytes:
    return json.dumps(
        {"term": record.term, "id": record.node_id, "url": record.url, "began": record.began}
    ).encode()


def encode_end(record: TermEnd) -> bytes:
    fields = {
        "term": record.term,
        "id": record.node_id,
        "url": record.url,
        "ended": record.ended,
        "how": record.how,
        "to": record.to,
        "detail": record.detail,
        "by": record.by,
    }
    if record.ended_earliest is not None:
        fields["ended_earliest"] = record.ended_earliest
    return json.dumps(fields).encode()


def decode_begin(raw: bytes) -> TermBegin | None:
    data = json_object(raw)
    if data is None:
        return None
    term, node_id, url, began = (data.get(k) for k in ("term", "id", "url", "began"))
    if not _is_term(term) or not _is_text(node_id) or not isinstance(url, str):
        return None
    start = wall_time(began)
    if start is None:
        return None
    assert isinstance(term, int) and isinstance(node_id, str)
    return TermBegin(term, node_id, url, start)


def decode_end(raw: bytes) -> TermEnd | None:
    data = json_object(raw)
    if data is None:
        return None
    term, node_id, url, ended = (data.get(k) for k in ("term", "id", "url", "ended"))
    how, to, detail, by = (data.get(k) for k in ("how", "to", "detail", "by"))
    if not _is_term(term) or not isinstance(node_id, str) or not isinstance(url, str):
        return None
    end = wall_time(ended)
    if end is None or not _is_text(how) or not isinstance(detail, str):
        return None
    if not (to is None or _is_text(to)) or not isinstance(by, str):
        return None
    assert isinstance(term, int) and isinstance(how, str)
    # Optional: a value that is not a time no later than "ended" is left out.
    earliest = wall_time(data.get("ended_earliest"))
    if earliest is not None and earliest > end:
        earliest = None
    return TermEnd(term, node_id, url, end, how, to, detail, by, earliest)


def _is_term(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


class History:
    """The history keys as last read or watched, and the view ``/history`` serves.

    ``fold`` takes a key's new value (or its deletion); :attr:`view` is rebuilt
    only when something changed, newest term first.
    """

    def __init__(self, cluster: str) -> None:
        self.prefix = history_prefix(cluster)
        self.begins: dict[int, TermBegin] = {}
        self.ends: dict[int, TermEnd] = {}
        #: (key, create_revision) of every history key, for pruning.
        self.revisions: dict[str, int] = {}
        self.view: tuple[TermRecord, ...] = ()
        self.loaded = False

    def owns(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def load(self, kvs: Iterable[KeyValue]) -> list[KeyValue]:
        """Replace everything with a full read of the prefix. Returns the garbage."""
        self.begins, self.ends, self.revisions = {}, {}, {}
        garbage = [kv for kv in kvs if not self._put(kv)]
        self.loaded = True
        self._rebuild()
        return garbage

    def fold(self, kv: KeyValue, deleted: bool = False) -> bool:
        """Take one key's change. False if the value is garbage (it is left out)."""
        if deleted:
            self._drop(kv.key)
            self._rebuild()
            return True
        ok = self._put(kv)
        self._rebuild()
        return ok

    def _put(self, kv: KeyValue) -> bool:
        match = _KEY.search(kv.key)
        if match is None:
            return False
        term = int(match.group(1))
        if match.group(2) == "begin":
            begin = decode_begin(kv.value)
            if begin is None or begin.term != term:
                return False
            self.begins[term] = begin
        else:
            end = decode_end(kv.value)
            if end is None or end.term != term:
                return False
            self.ends[term] = end
        self.revisions[kv.key] = kv.create_revision
        return True

    def _drop(self, key: str) -> None:
        self.revisions.pop(key, None)
        match = _KEY.search(key)
        if match is not None:
            term = int(match.group(1))
            (self.begins if match.group(2) == "begin" else self.ends).pop(term, None)

    def terms(self) -> list[int]:
        return sorted(set(self.begins) | set(self.ends))

    def excess(self) -> list[tuple[str, int]]:
        """The keys of the oldest terms beyond :data:`HISTORY_MAX`, with their revisions."""
        terms = self.terms()
        old = set(terms[: max(0, len(terms) - HISTORY_MAX)])
        return [(key, rev) for key, rev in self.revisions.items() if _term_of(key) in old]

    def _rebuild(self) -> None:
        records: list[TermRecord] = []
        previous: TermRecord | None = None
        for term in self.terms()[-HISTORY_MAX:]:
            begin, end = self.begins.get(term), self.ends.get(term)
            record = TermRecord(
                term=term,
                node_id=begin.node_id if begin else end.node_id if end else "",
                url=begin.url if begin else end.url if end else "",
                began=begin.began if begin else None,
                ended=end.ended if end else None,
                how=end.how if end else None,
                to=end.to if end else None,
                detail=end.detail if end else "",
            )
            if previous is not None and previous.ended is not None and record.began is not None:
                earliest = self.ends[previous.term].ended_earliest
                record = replace(
                    record,
                    gap=record.began - previous.ended,
                    gap_max=record.began - earliest if earliest is not None else None,
                )
            records.append(record)
            previous = record
        self.view = tuple(reversed(records))


def _term_of(key: str) -> int:
    match = _KEY.search(key)
    return int(match.group(1)) if match else 0
