"""Every decoder of a value read from the store takes any bytes without raising.

Anybody with write access to the store can put anything under any key of a
cluster. A decoder that raised would end the loop that read the key, and with
it the node's election, on every node and after every restart. These
properties feed arbitrary bytes, arbitrary JSON, and well-formed records with
hostile fields to each decoder: it must return a record or None, and every
time in a record must convert to a datetime (as the API models do).
"""

import json
import math
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from app.election.control import decode_control, maintenance_key, pause_key, switchover_key
from app.election.history import decode_begin, decode_end
from app.election.records import WALL_TIME_MAX, decode_leader, decode_member, wall_time
from app.http.models import utc
from app.store.base import KeyValue

CLUSTER = "c"

#: Values that passed the old checks and then crashed ``datetime.fromtimestamp``.
BAD_TIMES = [1e20, math.inf, -math.inf, math.nan, -1, -0.5, 1e12, 2**64, 10**400, True]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

#: Deeply nested input: more than the JSON parser's recursion limit.
nested = st.sampled_from([b"[" * 2000, b"{" + b'"a":{' * 3000, b"[" * 100_000 + b"]" * 100_000])


def _as_bytes(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


raw_values = st.binary(max_size=200) | nested | json_values.map(_as_bytes)

#: Records of the right shape with any value in one field.
record_fields = {
    "member": ({"id": "n1", "url": "http://n1:8700", "started_at": 1.0}, "started_at"),
    "begin": ({"term": 3, "id": "n1", "url": "u", "began": 1.0}, "began"),
    "end": (
        {"term": 3, "id": "n1", "url": "u", "ended": 1.0, "how": "x", "detail": "", "by": "n2"},
        "ended",
    ),
}


def _decode_everything(raw: bytes) -> list[object]:
    """Run every decoder of the store's values on ``raw``; return what they made."""
    kvs = [
        KeyValue(pause_key(CLUSTER), raw, 2, 2),
        KeyValue(switchover_key(CLUSTER), raw, 3, 3),
        KeyValue(maintenance_key(CLUSTER, "n1"), raw, 4, 4),
    ]
    return [
        decode_leader(raw),
        decode_member(raw),
        decode_begin(raw),
        decode_end(raw),
        decode_control(CLUSTER, kvs),
    ]


def _times_convert(decoded: list[object]) -> None:
    member, begin, end = decoded[1], decoded[2], decoded[3]
    times = [
        getattr(member, "started_at", 0.0),
        getattr(begin, "began", 0.0),
        getattr(end, "ended", 0.0),
    ]
    for seconds in times:
        assert math.isfinite(seconds) and 0 <= seconds <= WALL_TIME_MAX
        utc(seconds).isoformat()
        datetime.fromtimestamp(seconds, UTC)


@given(raw_values)
def test_no_value_makes_a_decoder_raise(raw: bytes):
    _times_convert(_decode_everything(raw))


@given(st.sampled_from(sorted(record_fields)), json_values | st.sampled_from(BAD_TIMES))
def test_a_time_out_of_range_is_garbage(kind: str, value: object):
    template, field = record_fields[kind]
    decoder = {"member": decode_member, "begin": decode_begin, "end": decode_end}[kind]
    record = decoder(_as_bytes({**template, field: value}))
    if record is not None:
        seconds = getattr(record, {"member": "started_at", "begin": "began", "end": "ended"}[kind])
        assert math.isfinite(seconds) and 0 <= seconds <= WALL_TIME_MAX
        utc(seconds).isoformat()


def test_nested_garbage_is_none_not_recursion_error():
    deep = b"[" * 2000
    assert decode_leader(deep) is None
    assert decode_member(deep) is None
    assert decode_begin(deep) is None
    assert decode_end(deep) is None
    state = decode_control(CLUSTER, [KeyValue(switchover_key(CLUSTER), deep, 3, 3)])
    assert state.garbage == (switchover_key(CLUSTER),)


def test_each_bad_time_is_refused_and_a_good_one_kept():
    for value in BAD_TIMES:
        assert wall_time(value) is None, value
        for kind, (template, field) in record_fields.items():
            decoder = {"member": decode_member, "begin": decode_begin, "end": decode_end}[kind]
            assert decoder(_as_bytes({**template, field: value})) is None, (kind, value)
    assert wall_time(0) == 0.0
    assert wall_time(1_765_000_000.25) == 1_765_000_000.25
    assert wall_time(WALL_TIME_MAX) == WALL_TIME_MAX
