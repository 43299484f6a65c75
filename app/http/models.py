"""Response bodies of the JSON endpoints, as pydantic models (they make the spec)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from app.role import Role


def utc(seconds: float) -> datetime:
    """Unix seconds as a UTC datetime: every JSON answer gives times in ISO 8601, UTC."""
    return datetime.fromtimestamp(seconds, UTC)


class LeaderInfo(BaseModel):
    id: str = Field(description="Node id of the master this node knows.")
    url: str = Field(description="Its advertise URL.")


class BackendInfo(BaseModel):
    name: str = Field(description="local or etcd.")
    reachable: bool = Field(description="Whether the last store call succeeded.")
    version: str = Field(
        description="The store server and its version as last read (etcd 3.4.23, "
        "sqlite 3.40.1); empty before the first read. etcd before 3.4.31, and 3.5 before "
        "3.5.13, has known lease bugs (etcd #12528, #15247)."
    )


class TransitionInfo(BaseModel):
    at: datetime = Field(description="Wall-clock time of the transition, ISO 8601 in UTC.")
    from_role: Role = Field(alias="from")
    to_role: Role = Field(alias="to")
    reason: str

    model_config = {"populate_by_name": True}


class CheckInfo(BaseModel):
    configured: bool = Field(description="Whether a local health check is set.")
    ok: bool = Field(description="Passing (after rise/fall); true when none is set.")
    detail: str = Field(description="Why, in words.")


class RoleInfo(BaseModel):
    node: str
    url: str = Field(description="This node's advertise URL.")
    started_at: datetime = Field(
        description="When this node's process started, ISO 8601 UTC. With url, it tells "
        "two processes started with the same node id apart."
    )
    role: Role
    is_master: bool = Field(description="The same decision /monitor makes at this instant.")
    term: int = Field(description="The leader key's create_revision; 0 when none is known.")
    leader: LeaderInfo | None
    leader_unknown: bool = Field(description="The leader key holds a value vipmon cannot read.")
    lease_remaining_ms: int
    backend: BackendInfo
    last_transition: TransitionInfo | None
    priority: int
    eligible: bool = Field(description="May take the role: priority > 0, no maintenance, check ok.")
    maintenance: bool
    paused: bool = Field(description="The cluster is paused: no automatic failover.")
    check: CheckInfo


class MemberInfo(BaseModel):
    id: str
    url: str
    role: Role = Field(description="MASTER for the node named by the leader key, else STANDBY.")
    is_master: bool
    version: str
    started_at: datetime = Field(description="When that node's process started, ISO 8601 UTC.")
    eligible: bool
    priority: int
    maintenance: bool
    check_ok: bool


class MissingInfo(BaseModel):
    id: str
    url: str = Field(description="Its advertise URL when it was last seen.")
    first_seen: datetime = Field(description="When a master first listed it, ISO 8601 UTC.")
    missing_since: datetime | None = Field(
        description="When the master saw its member record gone (its lease had run out), "
        "ISO 8601 UTC; null until a master has."
    )


class ClusterInfo(BaseModel):
    node: str = Field(description="The node that answered.")
    leader: str | None
    term: int
    paused: bool = Field(description="The cluster is paused: no automatic failover.")
    members: list[MemberInfo] = Field(description="Every member with a member record: alive.")
    missing: list[MissingInfo] = Field(
        description="Members seen before that have no member record now (crashed, stopped, "
        "cut off from the store), until `vipmon member forget` or --member-forget-after."
    )


class TermInfo(BaseModel):
    term: int = Field(description="The leader key's create_revision for that term.")
    node: str = Field(description="The node that held it.")
    url: str = Field(description="Its advertise URL.")
    began: datetime | None = Field(
        description="When it turned positive, as it saw it, ISO 8601 UTC; null if unrecorded."
    )
    ended: datetime | None = Field(description="When the term ended; null while it runs.")
    how: str | None = Field(
        description="switchover, maintenance, resigned, check failing, failback, lease expired, "
        "lease lost or released; null while it runs."
    )
    to: str | None = Field(description="A switchover's target.")
    detail: str = Field(description="Why, in the words of the node that recorded the end.")
    failover_gap_ms: int | None = Field(
        description="Milliseconds from the previous term's end to this term's first positive "
        "answer, by the two nodes' clocks; null when either is unrecorded. After a crash "
        "(the previous term's lease expired) the end is when this term's master saw the "
        "key go, so this is the least the outage can have lasted."
    )
    failover_gap_max_ms: int | None = Field(
        description="After a crash, the most the outage can have lasted: from the earliest "
        "the previous master can have stopped answering positive (the key's deletion as "
        "seen, less the lease TTL and 0.5 s of expiry slack) to this term's first positive "
        "answer; the real gap lies between failover_gap_ms and this. Null when the previous "
        "term ended by a planned release (the gap is exact) or is unrecorded."
    )


class HistoryInfo(BaseModel):
    node: str = Field(description="The node that answered.")
    terms: list[TermInfo] = Field(description="Newest first.")


class HealthInfo(BaseModel):
    status: str = Field(description="ok, or the reason it is not.")
