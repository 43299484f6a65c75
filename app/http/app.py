"""The FastAPI application: every answer comes from the node's current snapshot.

``create_app`` takes the node (anything with a ``snapshot`` attribute) and the
clock, so tests can hand in a fixed snapshot and a fake clock. No route
performs I/O. There are no redirects: ``redirect_slashes`` is off, unknown
paths get a JSON 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from app import __version__
from app.clock import Clock
from app.http.admin import AllowNetworks, Commands, Network, admin_router
from app.http.models import (
    BackendInfo,
    CheckInfo,
    ClusterInfo,
    HealthInfo,
    LeaderInfo,
    MemberInfo,
    RoleInfo,
    TransitionInfo,
)
from app.metrics import Metrics
from app.role import NodeView, Role, Snapshot

PROBE_METHODS = ["GET", "HEAD", "OPTIONS"]
_TEXT = {"content": {"text/plain": {"example": "ROLE=MASTER node=n1 term=42\n"}}}


def monitor_line(snap: Snapshot, role: Role) -> str:
    """The one-line body of /monitor, e.g. ``ROLE=STANDBY node=n2 term=7 leader=n1``."""
    line = f"ROLE={role.value} node={snap.node_id} term={snap.term}"
    if role is Role.STANDBY and snap.leader_id:
        line += f" leader={snap.leader_id}"
    if snap.paused:
        line += " paused=yes"
    if snap.check_configured:
        line += " check=ok" if snap.check_ok else f" check=failing({_plain(snap.check_detail)})"
    return line + "\n"


def _plain(text: str) -> str:
    """Free text made safe for a one-line body: no '=' (no fake tokens), no newlines."""
    cleaned = " ".join(text.replace("=", ":").replace("(", "[").replace(")", "]").split())
    return cleaned[:120]


def _probe_response(snap: Snapshot, role: Role, positive: bool) -> PlainTextResponse:
    return PlainTextResponse(
        monitor_line(snap, role),
        status_code=200 if positive else 503,
        headers={
            "Cache-Control": "no-store",
            "X-Vipmon-Role": role.value,
            "X-Vipmon-Term": str(snap.term),
        },
    )


def create_app(
    node: NodeView,
    clock: Clock,
    *,
    live_window: float,
    commands: Commands | None = None,
    admin_token: str | None = None,
    allow_networks: Sequence[Network] = (),
    metrics: Metrics | None = None,
) -> FastAPI:
    """Build the API. ``live_window``: how stale the loop heartbeat may be, in s.

    The /admin routes exist only with both ``commands`` and ``admin_token``;
    ``allow_networks``, when not empty, limits every path to those clients.
    """
    app = FastAPI(
        title="vipmon",
        version=__version__,
        description="Tells a load balancer which node holds the master role.",
        redirect_slashes=False,
    )

    def count(path: str, response: Response) -> Response:
        if metrics is not None:
            metrics.probe(path, response.status_code)
        return response

    def probe(
        path: str, positive: Callable[[Snapshot, Role], bool]
    ) -> Callable[[], Awaitable[Response]]:
        async def answer() -> Response:  # on the event loop: no hop to a worker thread
            snap = node.snapshot
            role = snap.role_at(clock.now())
            return count(path, _probe_response(snap, role, positive(snap, role)))

        return answer

    def is_master(snap: Snapshot, role: Role) -> bool:
        return role is Role.MASTER

    def is_healthy_standby(snap: Snapshot, role: Role) -> bool:
        return role is Role.STANDBY and snap.leader_id is not None

    monitor = probe("/monitor", is_master)
    root = probe("/", is_master)
    monitor_standby = probe("/monitor/standby", is_healthy_standby)

    probes = [
        ("/monitor", monitor, "monitor", "200 only while this node is master"),
        ("/", root, "root", "Alias of /monitor, for F5's default send string"),
        ("/monitor/standby", monitor_standby, "monitor_standby", "200 only for a healthy standby"),
    ]
    for path, endpoint, name, summary in probes:
        for method in PROBE_METHODS:
            app.add_api_route(
                path,
                endpoint,
                methods=[method],
                operation_id=f"{name}_{method.lower()}",
                summary=summary,
                response_class=PlainTextResponse,
                responses={200: _TEXT, 503: _TEXT},
            )

    @app.get("/role", response_model=RoleInfo, summary="This node's role and why")
    def role_info() -> RoleInfo:
        snap = node.snapshot
        now = clock.now()
        role = snap.role_at(now)
        last = snap.last_transition
        return RoleInfo(
            node=snap.node_id,
            role=role,
            is_master=role is Role.MASTER,
            term=snap.term,
            leader=LeaderInfo(id=snap.leader_id, url=snap.leader_url or "")
            if snap.leader_id
            else None,
            leader_unknown=snap.leader_unknown,
            lease_remaining_ms=int(snap.lease_remaining(now) * 1000) if snap.holds_key else 0,
            backend=BackendInfo(name=snap.backend, reachable=snap.store_reachable),
            last_transition=TransitionInfo.model_validate(
                {
                    "at": last.at_wall,
                    "from": last.from_role,
                    "to": last.to_role,
                    "reason": last.reason,
                }
            )
            if last
            else None,
            priority=snap.priority,
            eligible=snap.eligible,
            maintenance=snap.maintenance,
            paused=snap.paused,
            check=CheckInfo(
                configured=snap.check_configured, ok=snap.check_ok, detail=snap.check_detail
            ),
        )

    @app.get("/cluster", response_model=ClusterInfo, summary="Members, marking the master")
    def cluster_info() -> ClusterInfo:
        snap = node.snapshot
        members = [
            MemberInfo(
                id=m.node_id,
                url=m.advertise_url,
                role=Role.MASTER if m.node_id == snap.leader_id else Role.STANDBY,
                is_master=m.node_id == snap.leader_id,
                version=m.version,
                started_at=m.started_at,
                eligible=m.eligible,
                priority=m.priority,
                maintenance=m.maintenance,
                check_ok=m.check_ok,
            )
            for m in snap.members
        ]
        return ClusterInfo(
            node=snap.node_id,
            leader=snap.leader_id,
            term=snap.leader_term,
            paused=snap.paused,
            members=members,
        )

    @app.get(
        "/health/live",
        response_model=HealthInfo,
        responses={503: {"model": HealthInfo}},
        summary="The election loop is making progress",
    )
    def live() -> Response:
        stale = clock.now() - node.snapshot.loop_heartbeat
        if stale < live_window:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": f"election loop silent for {stale:.1f} s"}, 503)

    @app.get(
        "/health/ready",
        response_model=HealthInfo,
        responses={503: {"model": HealthInfo}},
        summary="The node is connected to its store",
    )
    def ready() -> Response:
        snap = node.snapshot
        if snap.store_reachable and clock.now() < snap.store_ok_until:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": f"store {snap.backend} unreachable"}, 503)

    if metrics is not None:

        @app.get(
            "/metrics",
            response_class=PlainTextResponse,
            summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}}},
        )
        def metrics_text() -> Response:
            body, content_type = metrics.render()
            return Response(body, media_type=content_type)

    if commands is not None and admin_token:
        app.include_router(admin_router(commands, admin_token))
    if allow_networks:
        app.add_middleware(AllowNetworks, networks=allow_networks)
    return app
