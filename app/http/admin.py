"""The admin API (``/admin/*``) and the client-network guard of the whole API.

* The admin routes exist only when a token is configured; otherwise every
  ``/admin`` path is a plain 404.
* :class:`AdminGate` checks ``Authorization: Bearer <token>`` before the body
  is read (none: 401, wrong: 403) and writes the audit trail, one line per
  request on the ``vipmon.audit`` logger. The token is never logged or echoed.
* Bodies are strict: an unknown key or a wrong type is 422 naming the field,
  a body that is not JSON 400 (:func:`install_body_errors`).
* The routes forward to :class:`Commands` (the election loop does the work);
  a refusal is 409 with the reason, an unreachable store 503.
* :class:`AllowNetworks` refuses clients outside ``--allow-cidr`` with 403,
  on every path, before routing.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, Request, Response, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import Conflict, StoreError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Commands(Protocol):
    """What the admin routes call; each returns a JSON-able dict."""

    def switchover(self, to: str | None) -> Awaitable[dict[str, Any]]: ...
    def maintenance(self, enabled: bool, force: bool = False) -> Awaitable[dict[str, Any]]: ...
    def pause(self, paused: bool) -> Awaitable[dict[str, Any]]: ...
    def forget(self, node: str) -> Awaitable[dict[str, Any]]: ...


_STRICT = ConfigDict(extra="forbid", strict=True)


class SwitchoverRequest(BaseModel):
    model_config = _STRICT
    to: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,63}$",
        description="Target node, or null for the best one.",
    )


class SwitchoverResult(BaseModel):
    from_node: str = Field(alias="from")
    to: str
    term: int = Field(description="The new master's term.")
    took_ms: float = Field(description="From the request to the new master holding the role.")


class MaintenanceRequest(BaseModel):
    model_config = _STRICT
    enabled: bool = Field(description="true: into maintenance; false: out of it.")
    force: bool = Field(
        default=False,
        description="With enabled true: go ahead even if this node is the last that could "
        "be master (the master with no eligible successor, or the only eligible node while "
        "there is no master), which is otherwise refused with 409. Ignored with false.",
    )


class NoArguments(BaseModel):
    """Pause and resume take no arguments: a body, if any, must be ``{}``."""

    model_config = _STRICT


class MaintenanceResult(BaseModel):
    node: str
    maintenance: bool
    handed_over_to: str | None


class PauseResult(BaseModel):
    paused: bool


class ForgetRequest(BaseModel):
    model_config = _STRICT
    node: str = Field(
        pattern=r"^[A-Za-z0-9._-]{1,63}$", description="The missing member to stop listing."
    )


class ForgetResult(BaseModel):
    node: str
    forgotten: bool


class Refusal(BaseModel):
    detail: str


_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": Refusal, "description": "The body is not JSON"},
    401: {"model": Refusal, "description": "No bearer token"},
    403: {"model": Refusal, "description": "Wrong token, network not allowed, or no client cert"},
    409: {"model": Refusal, "description": "Refused; the detail says why"},
    503: {"model": Refusal, "description": "The store is unreachable"},
}

#: The audit trail: one line per admin request, on its own logger.
audit_log = logging.getLogger("vipmon.audit")

#: Documents the bearer scheme in the spec; :class:`AdminGate` enforces it.
_bearer = HTTPBearer(auto_error=False, description="The admin token (--admin-token).")


def admin_router(commands: Commands) -> APIRouter:
    """The /admin routes. Put :class:`AdminGate` in front: it checks the token."""
    router = APIRouter(prefix="/admin", dependencies=[Security(_bearer)], responses=_REFUSALS)

    @router.post("/switchover", response_model=SwitchoverResult, summary="Planned hand-over")
    async def switchover(body: SwitchoverRequest, request: Request) -> Any:
        note(request, args=body.model_dump())
        return await _forward(request, lambda: commands.switchover(body.to))

    @router.post(
        "/maintenance", response_model=MaintenanceResult, summary="This node's maintenance"
    )
    async def maintenance(body: MaintenanceRequest, request: Request) -> Any:
        note(request, args=body.model_dump())
        return await _forward(request, lambda: commands.maintenance(body.enabled, body.force))

    @router.post("/pause", response_model=PauseResult, summary="No automatic failover")
    async def pause(request: Request, body: NoArguments | None = None) -> Any:
        return await _forward(request, lambda: commands.pause(True))

    @router.post("/resume", response_model=PauseResult, summary="Automatic failover again")
    async def resume(request: Request, body: NoArguments | None = None) -> Any:
        return await _forward(request, lambda: commands.pause(False))

    @router.post("/forget", response_model=ForgetResult, summary="Stop listing a missing member")
    async def forget(body: ForgetRequest, request: Request) -> Any:
        note(request, args=body.model_dump())
        return await _forward(request, lambda: commands.forget(body.node))

    return router


def note(request: Request, **fields: Any) -> None:
    """Add ``fields`` to the request's audit line (written by :class:`AdminGate`)."""
    request.scope.setdefault("state", {}).setdefault(_AUDIT, {}).update(fields)


async def _forward(request: Request, call: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    try:
        result = await call()
    except Conflict as exc:
        note(request, outcome=f"refused: {exc}")
        return JSONResponse({"detail": str(exc)}, status_code=409)
    except StoreError as exc:
        note(request, outcome=f"store unreachable: {exc}")
        return JSONResponse({"detail": f"store unreachable: {exc}"}, status_code=503)
    note(request, outcome=" ".join(f"{k}={v}" for k, v in result.items()))
    return result


_AUDIT = "vipmon_audit"


class AdminToken:
    """The admin token, replaceable while serving (SIGHUP re-reads ``--admin-token-file``)."""

    def __init__(self, value: str) -> None:
        self._expected = value.encode()

    def replace(self, value: str) -> None:
        self._expected = value.encode()

    def matches(self, given: bytes) -> bool:
        """Constant-time comparison with the current token."""
        return hmac.compare_digest(given, self._expected)


class AdminGate:
    """ASGI middleware for ``/admin``: the bearer token, then one audit line per request.

    The token is checked before the body is read, so a caller without it
    learns nothing about the body. ``Authorization: Bearer <token>``: none
    gives 401, a wrong one 403; the comparison is constant-time. The audit
    line names the client, the action, the arguments and the outcome; it never
    holds the token.
    """

    def __init__(self, app: ASGIApp, token: AdminToken) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under_admin(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, detail = refusal
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await _refuse(scope, receive, send, status, detail, headers)
            return
        seen = {"status": 500}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        fields: dict[str, Any] = {}
        scope.setdefault("state", {})[_AUDIT] = fields
        try:
            await self.app(scope, receive, watch)
        finally:
            _write_audit(scope, seen["status"], fields)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        given = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        if not given:
            return 401, "missing bearer token"
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not self.token.matches(token.strip()):
            return 403, "wrong token"
        return None


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer an /admin request with ``status`` and ``detail``, and audit it."""
    await JSONResponse({"detail": detail}, status, headers)(scope, receive, send)
    _write_audit(scope, status, {"outcome": detail})


def _write_audit(scope: Scope, status: int, fields: dict[str, Any]) -> None:
    """The audit line of one admin request: client, action, arguments, status, outcome."""
    client = scope.get("client")
    where = f"{client[0]}:{client[1]}" if client else "unknown"
    action = scope.get("path", "").removeprefix("/admin").strip("/") or "-"
    args = fields.get("args")
    outcome = fields.get("outcome") or ("ok" if status < 400 else "failed")
    audit_log.info(
        "admin %s %s from %s: %s -> %d %s",
        scope.get("method", "-"),
        action,
        where,
        json.dumps(args, sort_keys=True) if args is not None else "-",
        status,
        outcome,
        extra={
            "event": "admin",
            "client": where,
            "action": action,
            "arguments": args,
            "status": status,
            "outcome": outcome,
        },
    )


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


def _under_admin(path: str) -> bool:
    path = "/" + path.lstrip("/")
    return path == "/admin" or path.startswith("/admin/")


class AdminNeedsClientCert:
    """ASGI middleware: 403 on ``/admin`` paths for a connection without a client certificate.

    The certificate was verified in the handshake; here only its presence in the
    scope's TLS extension counts.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _under_admin(scope.get("path", "")):
            tls = scope.get("extensions", {}).get("tls") or {}
            if not tls.get("client_cert_chain"):
                await _refuse(scope, receive, send, 403, "client certificate required")
                return
        await self.app(scope, receive, send)


def install_admin(app: FastAPI, commands: Commands, token: str | AdminToken) -> None:
    """The ``/admin`` routes, behind :class:`AdminGate` with ``token``."""
    app.include_router(admin_router(commands))
    gate_token = token if isinstance(token, AdminToken) else AdminToken(token)
    app.add_middleware(AdminGate, token=gate_token)


def install_body_errors(app: FastAPI) -> None:
    """Word request-body errors: not JSON is 400, a wrong key or type 422 naming the field."""

    async def body_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            reason = bad_json.get("ctx", {}).get("error", "cannot be parsed")
            detail = f"the body is not valid JSON: {reason}"
            note(request, outcome=detail)
            return JSONResponse({"detail": detail}, status_code=400)
        words = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in errors
        )
        note(request, outcome=f"rejected: {words}")
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    app.add_exception_handler(RequestValidationError, body_error)
