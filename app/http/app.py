"""The HTTP application: every answer comes from the node's current snapshot.

``create_app`` puts :class:`app.probe.asgi.ProbeApp` (the probe routes, bare
ASGI) in front of ``create_api``'s FastAPI application, which
:class:`app.http.cors.PeerReads` wraps so that members' status pages may read
the JSON. ``create_api`` composes its parts, each in a module of its own: the
probe routes for the spec (:mod:`app.http.probes`), the read routes
(:mod:`app.http.reads`), the status page and ``/metrics``
(:mod:`app.http.pages`), and the admin routes with their guard
(:mod:`app.http.admin`). Both take the node (anything
with a ``snapshot`` attribute) and the clock, so tests can hand in a fixed
snapshot and a fake clock. No route performs I/O. There are no redirects:
``redirect_slashes`` is off, unknown paths get a JSON 404.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.types import ASGIApp

from app import __version__
from app.clock import Clock
from app.http.admin import (
    AdminNeedsClientCert,
    AdminToken,
    AllowNetworks,
    Commands,
    Network,
    install_admin,
    install_body_errors,
)
from app.http.cors import PeerReads
from app.http.pages import metrics_router, ui_router
from app.http.probes import probe_router
from app.http.reads import read_router
from app.metrics import Metrics
from app.probe.asgi import ProbeApp, Prober
from app.role import NodeView


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
    :func:`create_app` that app answers them first. The routes are added in
    the order the spec lists them.
    """
    app = FastAPI(
        title="vipmon",
        version=__version__,
        description="Tells a load balancer which node holds the master role.",
        redirect_slashes=False,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.include_router(probe_router(Prober(node, clock, metrics.probes if metrics else None)))
    app.include_router(read_router(node, clock, live_window=live_window))
    app.include_router(ui_router(node))
    if metrics is not None:
        app.include_router(metrics_router(metrics))
    install_body_errors(app)
    if commands is not None and admin_token:
        install_admin(app, commands, admin_token)
    return app
