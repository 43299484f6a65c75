"""The JSON records vipmon keeps in the store: the leader key and member records.

Parsing never raises: a value that is not our JSON yields ``None`` and the
caller treats the key as held by someone unknown. Any process with write
access to the store can put any bytes under any key, so every decoder of a
value read from the store goes through :func:`json_object` (which survives
input that is not UTF-8, not JSON, or nested deeper than the parser's
recursion limit) and checks each time with :func:`wall_time`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from app.role import Member


def cluster_prefix(cluster: str) -> str:
    """Every key of the cluster starts with this: the leader key, members, control."""
    return f"/vipmon/{cluster}/"


def leader_key(cluster: str) -> str:
    return f"/vipmon/{cluster}/leader"


def members_prefix(cluster: str) -> str:
    return f"/vipmon/{cluster}/members/"


def member_key(cluster: str, node_id: str) -> str:
    return members_prefix(cluster) + node_id


@dataclass(frozen=True)
class LeaderRecord:
    node_id: str
    advertise_url: str


def encode_leader(record: LeaderRecord) -> bytes:
    return json.dumps({"id": record.node_id, "url": record.advertise_url}).encode()


def decode_leader(raw: bytes) -> LeaderRecord | None:
    data = json_object(raw)
    if data is None:
        return None
    node_id, url = data.get("id"), data.get("url")
    if not isinstance(node_id, str) or not node_id or not isinstance(url, str):
        return None
    return LeaderRecord(node_id, url)


def encode_member(member: Member) -> bytes:
    return json.dumps(
        {
            "id": member.node_id,
            "url": member.advertise_url,
            "version": member.version,
            "started_at": member.started_at,
            "eligible": member.eligible,
            "priority": member.priority,
            "maintenance": member.maintenance,
            "check_ok": member.check_ok,
        }
    ).encode()


def decode_member(raw: bytes) -> Member | None:
    data = json_object(raw)
    if data is None:
        return None
    node_id, url = data.get("id"), data.get("url")
    version, started = data.get("version", ""), wall_time(data.get("started_at", 0.0))
    flags = [data.get(name, True) for name in ("eligible", "check_ok")]
    flags.append(data.get("maintenance", False))
    priority = data.get("priority", 100)
    if not isinstance(node_id, str) or not node_id or not isinstance(url, str):
        return None
    if not isinstance(version, str) or started is None:
        return None
    if not all(isinstance(flag, bool) for flag in flags):
        return None
    if not isinstance(priority, int) or isinstance(priority, bool):
        return None
    eligible, check_ok, maintenance = flags
    return Member(node_id, url, version, started, eligible, priority, maintenance, check_ok)


def json_object(raw: bytes) -> dict[str, Any] | None:
    """The JSON object ``raw`` holds, or None for anything else. Never raises.

    ``RecursionError`` comes from input nested deeper than the parser allows
    (``b"[" * 2000``): garbage like any other.
    """
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


#: The latest wall-clock time a record may carry: 9999-12-31T23:59:59Z, the
#: last second ``datetime`` can represent. Anything later is garbage.
WALL_TIME_MAX = 253402300799.0


def wall_time(value: object) -> float | None:
    """``value`` as Unix seconds, if it is a finite number in ``[0, WALL_TIME_MAX]``.

    Booleans, ``NaN``, infinities, negative and far-future values give None:
    every time read from the store must convert to a ``datetime`` without
    raising, wherever it is shown.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    if not math.isfinite(seconds) or not 0 <= seconds <= WALL_TIME_MAX:
        return None
    return seconds
