"""The read routes: ``/role``, ``/cluster``, ``/history`` and the two health checks.

Each answer is built from the node's snapshot and the clock at the instant of
the request; no route does I/O. The ``*_view`` functions are the views, kept
apart from the routes so that each fits on a screen and can be read alone.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from app.clock import Clock
from app.http.models import (
    BackendInfo,
    CheckInfo,
    ClusterInfo,
    HealthInfo,
    HistoryInfo,
    LeaderInfo,
    MemberInfo,
    MissingInfo,
    RoleInfo,
    TermInfo,
    TransitionInfo,
    utc,
)
from app.role import NodeView, Role, Snapshot, TermRecord


def read_router(node: NodeView, clock: Clock, *, live_window: float) -> APIRouter:
    """The read routes of ``node``. ``live_window``: how stale the loop heartbeat may be, s."""
    router = APIRouter()

    @router.get("/role", response_model=RoleInfo, summary="This node's role and why")
    async def role_info() -> RoleInfo:
        return role_view(node.snapshot, clock.now())

    @router.get(
        "/cluster", response_model=ClusterInfo, summary="Members, marking the master, and missing"
    )
    async def cluster_info() -> ClusterInfo:
        return cluster_view(node.snapshot)

    @router.get("/history", response_model=HistoryInfo, summary="The cluster's last terms")
    async def history(
        limit: int = Query(100, ge=1, le=1000, description="How many terms, newest first."),
    ) -> HistoryInfo:
        snap = node.snapshot
        return HistoryInfo(node=snap.node_id, terms=[term_view(r) for r in snap.history[:limit]])

    @router.get(
        "/health/live",
        response_model=HealthInfo,
        responses={503: {"model": HealthInfo}},
        summary="The election loop is making progress",
    )
    async def live() -> Response:
        stale = clock.now() - node.snapshot.loop_heartbeat
        if stale < live_window:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": f"election loop silent for {stale:.1f} s"}, 503)

    @router.get(
        "/health/ready",
        response_model=HealthInfo,
        responses={503: {"model": HealthInfo}},
        summary="The node is connected to its store",
    )
    async def ready() -> Response:
        snap = node.snapshot
        if snap.store_ready(clock.now()):
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": f"store {snap.backend} unreachable"}, 503)

    return router


def role_view(snap: Snapshot, now: float) -> RoleInfo:
    """``/role``: what the node says about itself at monotonic instant ``now``."""
    role = snap.role_at(now)
    last = snap.last_transition
    transition = (
        TransitionInfo.model_validate(
            {
                "at": utc(last.at_wall),
                "from": last.from_role,
                "to": last.to_role,
                "reason": last.reason,
            }
        )
        if last
        else None
    )
    return RoleInfo(
        node=snap.node_id,
        url=snap.advertise_url,
        started_at=utc(snap.started_at),
        role=role,
        is_master=role is Role.MASTER,
        term=snap.term,
        leader=LeaderInfo(id=snap.leader_id, url=snap.leader_url or "") if snap.leader_id else None,
        leader_unknown=snap.leader_unknown,
        lease_remaining_ms=int(snap.lease_remaining(now) * 1000) if snap.holds_key else 0,
        backend=BackendInfo(
            name=snap.backend, reachable=snap.store_reachable, version=snap.store_version
        ),
        last_transition=transition,
        priority=snap.priority,
        eligible=snap.eligible,
        maintenance=snap.maintenance,
        paused=snap.paused,
        check=CheckInfo(
            configured=snap.check_configured, ok=snap.check_ok, detail=snap.check_detail
        ),
    )


def cluster_view(snap: Snapshot) -> ClusterInfo:
    """``/cluster``: the members as last read, the master marked, and the missing ones."""
    members = [
        MemberInfo(
            id=m.node_id,
            url=m.advertise_url,
            role=Role.MASTER if m.node_id == snap.leader_id else Role.STANDBY,
            is_master=m.node_id == snap.leader_id,
            version=m.version,
            started_at=utc(m.started_at),
            eligible=m.eligible,
            priority=m.priority,
            maintenance=m.maintenance,
            check_ok=m.check_ok,
        )
        for m in snap.members
    ]
    missing = [
        MissingInfo(
            id=m.node_id,
            url=m.url,
            first_seen=utc(m.first_seen),
            missing_since=utc(m.missing_since) if m.missing_since is not None else None,
        )
        for m in snap.missing
    ]
    return ClusterInfo(
        node=snap.node_id,
        leader=snap.leader_id,
        term=snap.leader_term,
        paused=snap.paused,
        members=members,
        missing=missing,
    )


def term_view(record: TermRecord) -> TermInfo:
    """One term of ``/history``."""
    return TermInfo(
        term=record.term,
        node=record.node_id,
        url=record.url,
        began=utc(record.began) if record.began is not None else None,
        ended=utc(record.ended) if record.ended is not None else None,
        how=record.how,
        to=record.to,
        detail=record.detail,
        failover_gap_ms=round(record.gap * 1000) if record.gap is not None else None,
        failover_gap_max_ms=round(record.gap_max * 1000) if record.gap_max is not None else None,
    )
