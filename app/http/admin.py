"""The admin API (``/admin/*``) and the client-network guard of the whole API.

* The admin routes exist only when a token is configured; otherwise every
  ``/admin`` path is a plain 404.
* ``Authorization: Bearer <token>``: none gives 401, a wrong one 403. The
  comparison is constant-time. The token is never logged or echoed.
* The routes forward to :class:`Commands` (the election loop does the work);
  a refusal is 409 with the reason, an unreachable store 503.
* :class:`AllowNetworks` refuses clients outside ``--allow-cidr`` with 403,
  on every path, before routing.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import Conflict, StoreError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Commands(Protocol):
    """What the admin routes call; each returns a JSON-able dict."""

    def switchover(self, to: str | None) -> Awaitable[dict[str, Any]]: ...
    def maintenance(self, enabled: bool) -> Awaitable[dict[str, Any]]: ...
    def pause(self, paused: bool) -> Awaitable[dict[str, Any]]: ...


class SwitchoverRequest(BaseModel):
    to: str | None = Field(default=None, description="Target node, or null for the best one.")


class SwitchoverResult(BaseModel):
    from_node: str = Field(alias="from")
    to: str
    term: int = Field(description="The new master's term.")
    took_ms: float = Field(description="From the request to the new master holding the role.")


class MaintenanceRequest(BaseModel):
    enabled: bool


class MaintenanceResult(BaseModel):
    node: str
    maintenance: bool
    handed_over_to: str | None


class PauseResult(BaseModel):
    paused: bool


class Refusal(BaseModel):
    detail: str


_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Refusal, "description": "No bearer token"},
    403: {"model": Refusal, "description": "Wrong token, network not allowed, or no client cert"},
    409: {"model": Refusal, "description": "Refused; the detail says why"},
    503: {"model": Refusal, "description": "The store is unreachable"},
}


def admin_router(commands: Commands, token: str) -> APIRouter:
    """The /admin routes, guarded by ``token``."""
    expected = token.encode()

    async def authorised(authorization: str | None = Header(default=None)) -> None:
        if not authorization:
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(403, "wrong token")

    router = APIRouter(prefix="/admin", dependencies=[Depends(authorised)], responses=_REFUSALS)

    @router.post("/switchover", response_model=SwitchoverResult, summary="Planned hand-over")
    async def switchover(body: SwitchoverRequest) -> Any:
        return await _forward(lambda: commands.switchover(body.to))

    @router.post(
        "/maintenance", response_model=MaintenanceResult, summary="This node's maintenance"
    )
    async def maintenance(body: MaintenanceRequest) -> Any:
        return await _forward(lambda: commands.maintenance(body.enabled))

    @router.post("/pause", response_model=PauseResult, summary="No automatic failover")
    async def pause() -> Any:
        return await _forward(lambda: commands.pause(True))

    @router.post("/resume", response_model=PauseResult, summary="Automatic failover again")
    async def resume() -> Any:
        return await _forward(lambda: commands.pause(False))

    return router


async def _forward(call: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    try:
        return await call()
    except Conflict as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    except StoreError as exc:
        return JSONResponse({"detail": f"store unreachable: {exc}"}, status_code=503)


class AllowNetworks:
    """ASGI middleware: 403 for any client outside ``networks``."""

    def __init__(self, app: ASGIApp, networks: Sequence[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope.get("client")):
            response = JSONResponse({"detail": "client network not allowed"}, status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, client: Any) -> bool:
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)
