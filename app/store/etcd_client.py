"""Transport to etcd's v3 JSON gateway: endpoints, path prefix, auth, errors.

:class:`EtcdClient` sends one POST per call and returns the decoded JSON
object. It owns everything that is not the meaning of a reply:

* the HTTP client, :class:`app.store.http1.ConnectionPool` (any
  :class:`app.store.http1.Transport` in tests), created lazily inside the
  running event loop: a small one, as a node sends requests for as long as
  it runs. Its connections stay open between requests; one whose reply was
  not read to its end (a timeout, a failure) is closed, never reused, and a
  request that fails on a kept connection is not sent again there: the call
  moves on to the next endpoint as after any connect error;
* the path prefix, picked from ``GET /version``, which is read before the first
  call and again after an endpoint failed (the next one may run another
  release); a release with known lease bugs is logged at WARNING, once per
  version read (:mod:`app.store.etcd_version`);
* endpoint rotation: on a connect error, a timeout or a 5xx it moves to the
  next endpoint, trying each at most once per call, all within one
  ``timeout`` for the whole call (the next call starts at the endpoint after
  the one that failed);
* pinned pairs of requests (:meth:`EtcdClient.call_pair`), sent to one member
  one after the other, for renewals confirmed by a quorum read;
* the auth token, sent raw in ``Authorization`` and renewed once per call when
  etcd says it is invalid;
* the mapping of every failure onto :mod:`app.errors`.

Nothing here logs a password or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from app.errors import (
    SettingsError,
    StoreAuthError,
    StoreNoLeader,
    StoreProtocolError,
    StoreUnavailable,
)
from app.store.etcd_version import lease_bug_warning
from app.store.http1 import ConnectionPool, Transport, TransportError, parse_origin

log = logging.getLogger(__name__)

JSONObject = dict[str, Any]
T = TypeVar("T")

HASLEADER = {"Grpc-Metadata-Hasleader": "true"}
GRPC_UNAUTHENTICATED = 16
GRPC_PERMISSION_DENIED = 7
GRPC_NOT_FOUND = 5
GRPC_TRANSIENT = {4, 8, 14}  # DeadlineExceeded, ResourceExhausted, Unavailable


class EtcdReplyError(StoreProtocolError):
    """etcd refused a request with an error we have no other mapping for.

    ``status`` is the HTTP status, ``code`` the gRPC code (0 if unknown).
    """

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"etcd answered HTTP {status} (gRPC code {code}): {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def lease_not_found(self) -> bool:
        return self.code == GRPC_NOT_FOUND and "lease not found" in self.message


class _EndpointFailed(Exception):
    """This endpoint cannot answer now; try the next one.

    ``refused``: it refused our client certificate (an auth error, not an outage).
    """

    def __init__(self, reason: str, *, no_leader: bool = False, refused: bool = False) -> None:
        super().__init__(reason)
        self.no_leader = no_leader
        self.refused = refused


class _TokenRejected(Exception):
    """etcd wants a (new) token."""


_CERT_ADVICE = "check that it is signed by a CA etcd trusts, has not expired and allows client auth"
_GATEWAY_CN = b"CommonName of client sending a request against gateway"


def _connection_failure(what: str, exc: BaseException) -> _EndpointFailed:
    """An operator's words for a request that failed below HTTP, from the exception chain.

    The transport chains the ssl module's errors: a failed check of the
    server's certificate at connect, or etcd's TLS alert when it refuses ours
    (under TLS 1.3 it comes on the first read, after the handshake).
    """
    link: BaseException | None = exc
    for _ in range(8):  # the chain is short; bound the walk anyway
        if link is None:
            break
        if isinstance(link, ssl.SSLCertVerificationError):
            return _EndpointFailed(f"TLS: certificate verify failed: {link.verify_message}")
        if isinstance(link, ssl.SSLError):
            reason = str(link.reason or link)
            alert = reason.partition("ALERT_")[2]
            words = (alert or reason).lower().replace("_", " ")
            if alert and ("CERTIFICATE" in alert or alert == "UNKNOWN_CA"):
                return _EndpointFailed(
                    f'refused our client certificate (TLS alert "{words}"): {_CERT_ADVICE}',
                    refused=True,
                )
            return _EndpointFailed(f"TLS: {words}")
        link = link.__cause__ or link.__context__
    detail = str(exc)
    return _EndpointFailed(f"{what}: {type(exc).__name__}" + (f": {detail}" if detail else ""))


def _etcd_words(message: str) -> str:
    return message.removeprefix("etcdserver: ").removeprefix("auth: ")


def parse_first_json(content: bytes) -> JSONObject:
    """Decode the first JSON object of a body that may be a stream of JSON lines."""
    try:
        text = content.decode("utf-8").lstrip()
        value, _ = json.JSONDecoder().raw_decode(text)
    except ValueError as exc:
        raise StoreProtocolError(f"etcd reply is not JSON: {content[:120]!r}") from exc
    if not isinstance(value, dict):
        raise StoreProtocolError(f"etcd reply is not a JSON object: {content[:120]!r}")
    return value


def grpc_error(obj: JSONObject) -> tuple[int, str] | None:
    """The (gRPC code, message) of an error reply, or None if ``obj`` is no error.

    Unary calls answer ``{"error": "...", "message": "...", "code": N}``;
    streams answer ``{"error": {"grpc_code": N, "message": "..."}}``.
    """
    err = obj.get("error")
    if not err:
        return None
    if isinstance(err, dict):
        code, message = err.get("grpc_code"), err.get("message")
    else:
        code, message = obj.get("code"), obj.get("message") or err
    return (code if isinstance(code, int) else 0), str(message or "")


def path_prefix(version: str) -> str:
    """``/v3`` for etcd >= 3.4, ``/v3beta`` for 3.3, ``/v3alpha`` for older."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError as exc:
        raise StoreProtocolError(f"cannot read etcd version {version!r}") from exc
    if (major, minor) >= (3, 4):
        return "/v3"
    if (major, minor) == (3, 3):
        return "/v3beta"
    return "/v3alpha"


def _ssl_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError("etcd_ca_file", f"cannot load {ca}: {exc}") from exc
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError("etcd_cert_file", f"cannot load {cert}: {exc}") from exc
    return context


def _normalise(endpoint: str) -> str:
    endpoint = endpoint.strip()
    endpoint = endpoint if "://" in endpoint else f"http://{endpoint}"
    try:
        parse_origin(endpoint)
    except ValueError as exc:
        raise SettingsError("etcd_endpoints", f"{endpoint!r}: {exc}") from exc
    return endpoint.rstrip("/")


def _json(body: JSONObject) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class EtcdClient:
    """POSTs JSON to etcd's gateway with failover, auth and error mapping.

    Every public method raises only :class:`app.errors.StoreError` subclasses:
    ``StoreUnavailable``/``StoreNoLeader`` when no endpoint could answer,
    ``StoreAuthError`` when credentials are refused, ``StoreProtocolError``
    (or its subclass :class:`EtcdReplyError`) for replies we cannot use.
    The constructor raises :class:`app.errors.SettingsError` for bad settings.
    """

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.endpoints = [_normalise(e) for e in endpoints if e.strip()]
        if not self.endpoints:
            raise SettingsError("etcd_endpoints", "at least one endpoint is needed")
        if timeout <= 0:
            raise SettingsError("store_timeout", "must be > 0")
        self.timeout = timeout
        self._username = username or None
        self._password = password or ""
        self._transport = transport
        self._ssl: ssl.SSLContext | None = None
        if ca_file or cert_file or any(e.startswith("https://") for e in self.endpoints):
            self._ssl = _ssl_context(ca_file, cert_file, key_file)
        self._http: Transport | None = None
        self._current = 0
        self._prefix: str | None = None
        #: Set when an endpoint failed: read ``/version`` again before the next request.
        self._version_stale = False
        self._token: str | None = None
        #: What the last ``GET /version`` said (``"3.4.23"``), "" before the first.
        self.server_version = ""

    # -- public ------------------------------------------------------------

    async def call(self, method: str, body: JSONObject) -> JSONObject:
        """POST ``body`` to ``<prefix><method>`` and return the first JSON object of the reply."""
        return await self._rotate(lambda base: self._with_auth(base, self._post, method, body))

    async def call_pair(
        self, first: tuple[str, JSONObject], then: tuple[str, JSONObject]
    ) -> tuple[JSONObject, JSONObject]:
        """POST ``first``, and once it has answered, ``then``, both to the same endpoint.

        Both replies, or the error of whichever failed; the pair moves to the
        next endpoint as one, within the one timeout of the whole call.
        """

        async def both(base: str) -> tuple[JSONObject, JSONObject]:
            one = await self._with_auth(base, self._post, *first)
            two = await self._with_auth(base, self._post, *then)
            return one, two

        return await self._rotate(both)

    async def watch(self, body: JSONObject, timeout: float) -> JSONObject | None:
        """Open a watch and return the first ``result`` that has events or is canceled.

        Returns None when ``timeout`` s pass without one. The watch must be
        created within the per-request timeout, or the endpoint counts as down.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)

        async def on(base: str) -> JSONObject | None:
            return await self._with_auth(base, self._watch_on, deadline, body)

        return await self._rotate(on, bounded=False)

    async def close(self) -> None:
        """Close every connection. Safe to call twice; a later call opens new ones."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    # -- rotation and auth ------------------------------------------------

    async def _rotate(self, attempt: Callable[[str], Awaitable[T]], *, bounded: bool = True) -> T:
        """Try ``attempt`` on each endpoint once, from the current one.

        ``bounded``: the whole call, every try included, ends within one
        ``timeout`` (a watch bounds itself instead).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout if bounded else math.inf
        failure = _EndpointFailed(f"no time left within the {self.timeout:g} s store timeout")
        where = "etcd"
        tried = 0
        for _ in range(len(self.endpoints)):
            base = self.endpoints[self._current]
            if deadline - loop.time() <= 0:
                break
            tried += 1
            try:
                try:
                    async with asyncio.timeout_at(None if not bounded else deadline):
                        return await attempt(base)
                except TimeoutError as exc:
                    raise _EndpointFailed(
                        f"no answer within the {self.timeout:g} s store timeout"
                    ) from exc
            except _EndpointFailed as exc:
                failure, where = exc, f"etcd {base}"
                log.debug("etcd endpoint %s failed: %s", base, exc)
                self._current = (self._current + 1) % len(self.endpoints)
                self._version_stale = True
        cause = failure.__cause__ or failure
        if failure.no_leader:
            raise StoreNoLeader(f"etcd has no leader ({tried} endpoint(s) tried)") from cause
        if failure.refused:
            raise StoreAuthError(f"{where}: {failure}") from cause
        summary = f"no etcd endpoint answered, {tried} tried"
        raise StoreUnavailable(f"{where}: {failure} ({summary})") from cause

    async def _with_auth(self, base: str, request: Callable[..., Awaitable[T]], *args: Any) -> T:
        await self._ensure_ready(base)
        try:
            return await request(base, *args)
        except _TokenRejected as exc:
            if self._username is None:
                raise StoreAuthError("etcd requires authentication; no username set") from exc
        log.info("etcd rejected our auth token; authenticating again")
        self._token = None
        await self._ensure_ready(base)
        try:
            return await request(base, *args)
        except _TokenRejected as exc:
            raise StoreAuthError("etcd rejected a freshly issued token") from exc

    async def _ensure_ready(self, base: str) -> None:
        if self._prefix is None or self._version_stale:
            # Never back to None: another call may be building its URL right now.
            self._prefix = await self._probe_version(base)
            self._version_stale = False
        if self._username is not None and self._token is None:
            self._token = await self._authenticate(base)

    async def _probe_version(self, base: str) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                status, content = await self._client().request(
                    "GET", base + "/version", None, HASLEADER
                )
        except (TransportError, TimeoutError) as exc:
            raise _connection_failure("GET /version", exc) from exc
        version = self._decode(status, content, "GET /version").get("etcdserver")
        if not isinstance(version, str):
            raise StoreProtocolError(f"GET {base}/version has no etcdserver field")
        prefix = path_prefix(version)
        self._note_version(base, version)
        return prefix

    def _note_version(self, base: str, version: str) -> None:
        """Keep the version; log it when it is new: WARNING if it has known lease bugs."""
        if version == self.server_version:
            return
        self.server_version = version
        warning = lease_bug_warning(version)
        if warning:
            log.warning("etcd at %s: %s", base, warning)
        else:
            log.info("etcd %s at %s", version, base)

    async def _authenticate(self, base: str) -> str:
        body = {"name": self._username, "password": self._password}
        status, content = await self._send(base, "/auth/authenticate", body, token=False)
        try:
            obj = self._decode(status, content, "authenticate")
        except EtcdReplyError as exc:
            if "authentication is not enabled" in exc.message:
                log.warning("etcd auth is not enabled; sending no token")
                return ""
            raise self._refused(base, exc.message) from exc
        except _TokenRejected as exc:
            raise self._refused(base, str(exc)) from exc
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            raise StoreProtocolError("etcd authenticate reply has no token")
        if not (token.isascii() and token.isprintable()):  # it goes into a header line
            raise StoreProtocolError("etcd authenticate reply has a token we cannot send")
        return token

    def _refused(self, base: str, message: str) -> StoreAuthError:
        return StoreAuthError(
            f"etcd {base}: refused the credentials of user {self._username!r}: "
            f"{_etcd_words(message)}"
        )

    # -- one request on one endpoint ---------------------------------------

    def _client(self) -> Transport:
        if self._http is None:
            self._http = self._transport or ConnectionPool(self._ssl)
        return self._http

    def _headers(self) -> Mapping[str, str]:
        return {**HASLEADER, "Authorization": self._token} if self._token else HASLEADER

    async def _send(
        self, base: str, method: str, body: JSONObject, *, token: bool = True
    ) -> tuple[int, bytes]:
        url = f"{base}{self._prefix}{method}"
        headers = self._headers() if token else HASLEADER
        try:
            async with asyncio.timeout(self.timeout):
                return await self._client().request("POST", url, _json(body), headers)
        except (TransportError, TimeoutError) as exc:
            raise _connection_failure(f"POST {method}", exc) from exc

    async def _post(self, base: str, method: str, body: JSONObject) -> JSONObject:
        return self._decode(*await self._send(base, method, body), f"POST {method}")

    def _decode(self, status: int, content: bytes, what: str) -> JSONObject:
        """The reply's first JSON object, or the mapped exception for an error reply."""
        if status == 400 and content.startswith(_GATEWAY_CN):
            raise _EndpointFailed(
                "refused our client certificate: it has a Common Name, and with auth on "
                "etcd's JSON gateway accepts only client certificates with an empty subject",
                refused=True,
            )
        if status >= 500 or status == 429:
            try:
                _, message = grpc_error(parse_first_json(content)) or (0, "")
            except StoreProtocolError:
                message = ""
            raise _EndpointFailed(
                f"{what}: HTTP {status} {message}".rstrip(), no_leader="no leader" in message
            )
        obj = parse_first_json(content)
        error = grpc_error(obj)
        if error is None and 200 <= status < 300:
            return obj
        code, message = error or (0, f"HTTP {status}")
        self._raise_for_error(status, code, message)
        raise EtcdReplyError(status, code, message)

    def _raise_for_error(self, status: int, code: int, message: str) -> None:
        """Raise the mapped exception for errors that are not the request's own fault."""
        if "no leader" in message:
            raise _EndpointFailed(message, no_leader=True)
        if status >= 500 or status == 429 or code in GRPC_TRANSIENT:
            raise _EndpointFailed(f"HTTP {status} {message}")
        if status == 401 or code == GRPC_UNAUTHENTICATED:
            raise _TokenRejected(message)
        if "user name is empty" in message:
            if self._username is not None:
                raise _TokenRejected(message)
            raise StoreAuthError("etcd requires authentication; no username set")
        if status == 403 or code == GRPC_PERMISSION_DENIED:
            if self._username is not None and self._token == "":
                # We sent no token because auth was off when we asked; it has been turned
                # on since (etcd says so to a client certificate with an empty subject).
                raise _TokenRejected(message)
            raise StoreAuthError(f"etcd denied the request: {message}")

    # -- watch ---------------------------------------------------------------

    async def _watch_on(self, base: str, deadline: float, body: JSONObject) -> JSONObject | None:
        loop = asyncio.get_running_loop()
        create_by = loop.time() + self.timeout
        url = f"{base}{self._prefix}/watch"
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout_at(min(deadline, create_by)):
                    reply = await stack.enter_async_context(
                        self._client().stream("POST", url, _json(body), self._headers())
                    )
                    if reply.status != 200:
                        self._decode(reply.status, await reply.read(), "watch")
                    lines = reply.lines()
                    first = await self._next_result(lines)
            except TimeoutError as exc:
                if deadline < create_by:
                    return None
                raise _EndpointFailed("watch was not created in time") from exc
            except TransportError as exc:
                raise _connection_failure("watch", exc) from exc
            if self._watch_verdict(first):
                return first
            try:
                async with asyncio.timeout_at(deadline):
                    while True:
                        result = await self._next_result(lines)
                        if self._watch_verdict(result):
                            return result
            except TimeoutError:
                return None
            except TransportError as exc:
                raise _EndpointFailed(f"watch stream broke: {exc}") from exc

    async def _next_result(self, lines: AsyncIterator[bytes]) -> JSONObject:
        async for line in lines:
            if not line.strip():
                continue
            result = self._decode(200, line, "watch").get("result")
            if not isinstance(result, dict):
                raise StoreProtocolError(f"watch line has no result: {line[:120]!r}")
            return result
        raise _EndpointFailed("watch stream ended")

    def _watch_verdict(self, result: JSONObject) -> bool:
        """True if ``result`` ends the watch: events, compaction or cancel."""
        if result.get("canceled") or result.get("compact_revision"):
            reason = str(result.get("cancel_reason") or "")
            if "invalid auth token" in reason or "Unauthenticated" in reason:
                raise _TokenRejected(reason)
            if "permission denied" in reason:
                raise StoreAuthError(f"etcd denied the watch: {reason}")
            return True
        return bool(result.get("events"))
