"""The HTTP application: every answer comes from the node's current snapshot.

``create_app`` puts :class:`app.probe.asgi.ProbeApp` (the probe routes, bare
ASGI) in front of ``create_api``'s FastAPI application (the JSON routes, the
status page ``/ui`` and the spec), which :class:`app.http.cors.PeerReads` wraps
so that members' status pages may read the JSON. Both take the node (anything
with a ``snapshot`` attribute) and the clock, so tests can hand in a fixed
snapshot and a fake clock. No route performs I/O. There are no redirects:
``redirect_slashes`` is off, unknown paths get a JSON 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.types import ASGIApp

from app import __version__
from app.clock import Clock
from app.http.admin import (
    AdminGate,
    AdminNeedsClientCert,
    AdminToken,
    AllowNetworks,
    Commands,
    Network,
    admin_router,
    install_body_errors,
)
from app.http.cors import PeerReads
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
from app.http.ui import StatusPage
from app.metrics import Metrics
from app.probe.answer import PROBE_METHODS, PROBE_ROUTES
from app.probe.asgi import ProbeApp, Prober
from app.role import NodeView, Role, TermRecord

_TEXT = {"content": {"text/plain": {"example": "ROLE=MASTER node=n1 term=42\n"}}}
_PROBE_DOCS = {
    "/monitor": ("monitor", "200 only while this node is master"),
    "/": ("root", "Alias of /monitor, for F5's default send string"),
    "/monitor/standby": ("monitor_standby", "200 only for a healthy standby"),
}


def create_app(
    node: NodeView,
    clock: Clock,
    *,
    live_window: float,
    commands: Commands | None = None,
    admin_token: str | AdminToken | None = None,
    allow_networks: Sequence[Network] = (),
    metrics: Metrics | None = None,
    docs: bool = False,
    admin_needs_client_cert: bool = False,
) -> ASGIApp:
    """The whole HTTP application: the probe routes in front of the JSON API.

    ``live_window``: how stale the loop heartbeat may be, in s. The /admin
    routes exist only with both ``commands`` and ``admin_token``;
    ``allow_networks``, when not empty, limits every path (probes included) to
    those clients. ``docs`` serves ``/docs`` and ``/redoc``.
    ``admin_needs_client_cert``: ``/admin`` paths answer 403 to a connection
    without a verified TLS client certificate.
    """
    api = create_api(
        node,
        clock,
        live_window=live_window,
        commands=commands,
        admin_token=admin_token,
        metrics=metrics,
        docs=docs,
    )
    app: ASGIApp = ProbeApp(node, clock, PeerReads(api, node), metrics.probes if metrics else None)
    if admin_needs_client_cert:
        app = AdminNeedsClientCert(app)
    if allow_networks:
        app = AllowNetworks(app, networks=allow_networks)
    return app


def create_api(
    node: NodeView,
    clock: Clock,
    *,
    live_window: float,
    commands: Commands | None = None,
    admin_token: str | AdminToken | None = None,
    metrics: Metrics | None = None,
    docs: bool = False,
) -> FastAPI:
    """The FastAPI application: the JSON routes, and the probe routes for the spec.

    Its probe routes answer as :class:`app.probe.asgi.ProbeApp` does; in
    :func:`create_app` that app answers them first.
    """
    app = FastAPI(
        title="vipmon",
        version=__version__,
        description="Tells a load balancer which node holds the master role.",
        redirect_slashes=False,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )

    prober = Prober(node, clock, metrics.probes if metrics else None)

    def probe(path: str) -> Callable[[], Awaitable[Response]]:
        async def answer() -> Response:
            status, text = prober.answer(path)
            headers = {k.decode(): v.decode() for k, v in text.headers}
            return Response(text.body, status_code=status, headers=headers)

        return answer

    for path in PROBE_ROUTES:
        name, summary = _PROBE_DOCS[path]
        endpoint = probe(path)
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
    async def role_info() -> RoleInfo:
        snap = node.snapshot
        now = clock.now()
        role = snap.role_at(now)
        last = snap.last_transition
        return RoleInfo(
            node=snap.node_id,
            url=snap.advertise_url,
            started_at=utc(snap.started_at),
            role=role,
            is_master=role is Role.MASTER,
            term=snap.term,
            leader=LeaderInfo(id=snap.leader_id, url=snap.leader_url or "")
            if snap.leader_id
            else None,
            leader_unknown=snap.leader_unknown,
            lease_remaining_ms=int(snap.lease_remaining(now) * 1000) if snap.holds_key else 0,
            backend=BackendInfo(
                name=snap.backend, reachable=snap.store_reachable, version=snap.store_version
            ),
            last_transition=TransitionInfo.model_validate(
                {
                    "at": utc(last.at_wall),
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

    @app.get(
        "/cluster", response_model=ClusterInfo, summary="Members, marking the master, and missing"
    )
    async def cluster_info() -> ClusterInfo:
        snap = node.snapshot
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

    @app.get("/history", response_model=HistoryInfo, summary="The cluster's last terms")
    async def history(
        limit: int = Query(100, ge=1, le=1000, description="How many terms, newest first."),
    ) -> HistoryInfo:
        snap = node.snapshot
        return HistoryInfo(node=snap.node_id, terms=[_term(r) for r in snap.history[:limit]])

    @app.get(
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

    @app.get(
        "/health/ready",
        response_model=HealthInfo,
        responses={503: {"model": HealthInfo}},
        summary="The node is connected to its store",
    )
    async def ready() -> Response:
        snap = node.snapshot
        if snap.store_reachable and clock.now() < snap.store_ok_until:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": f"store {snap.backend} unreachable"}, 503)

    page = StatusPage.load()

    @app.get(
        "/ui",
        response_class=HTMLResponse,
        summary="The live status page (HTML)",
        responses={200: {"content": {"text/html": {}}}},
    )
    async def status_page() -> Response:
        return HTMLResponse(page.body, headers=page.headers(node.snapshot))

    if metrics is not None:

        @app.get(
            "/metrics",
            response_class=PlainTextResponse,
            summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}}},
        )
        async def metrics_text() -> Response:
            body, content_type = metrics.render()
            return Response(body, media_type=content_type)

    install_body_errors(app)
    if commands is not None and admin_token:
        app.include_router(admin_router(commands))
        token = admin_token if isinstance(admin_token, AdminToken) else AdminToken(admin_token)
        app.add_middleware(AdminGate, token=token)
    return app


def _term(record: TermRecord) -> TermInfo:
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
