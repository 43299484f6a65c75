"""Cross-origin reads for the status page: members' pages may read this node's JSON.

The status page (``/ui``) loaded from one member asks every other member for
``/role``, and asks another one for ``/cluster`` and ``/history`` when its own
stops answering. A browser lets the page read those answers only when they
carry ``Access-Control-Allow-Origin``. :class:`PeerReads` adds it, with
``Vary: Origin``, to a ``GET`` of the read endpoints whose ``Origin`` is the
origin of a member URL this node has seen (``Snapshot.peer_urls``, a dead
member's too). Nothing else gets it: no other method or path (``/admin``
never), no unknown origin, no credentials. Only the snapshot is read.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.role import NodeView

#: The JSON read endpoints a member's page may read.
READ_PATHS = frozenset({"/role", "/cluster", "/history", "/health/live", "/health/ready"})

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` as a browser writes it in ``Origin``; None if not http(s).

    Scheme and host are lower-cased and a default port is left out, so
    ``HTTP://N1:80/x`` and ``http://n1`` are the same origin.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if ":" in host:  # IPv6, in the compressed form a browser writes
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def peer_origins(urls: frozenset[str]) -> frozenset[str]:
    """The origins of member URLs, each as :func:`origin_of` writes it."""
    return frozenset(o for o in map(origin_of, urls) if o is not None)


class PeerReads:
    """ASGI middleware: ``Access-Control-Allow-Origin`` for members' pages on read paths."""

    def __init__(self, app: ASGIApp, node: NodeView) -> None:
        self.app = app
        self.node = node
        self._urls: frozenset[str] = frozenset()
        self._origins: frozenset[str] = frozenset()

    def allowed(self, origin: str) -> bool:
        """Whether ``origin`` (an ``Origin`` header) is a member's origin right now.

        Browsers write an origin in one form only, the form :func:`origin_of`
        gives; anything else (a path, upper case, a default port) is no match.
        """
        urls = self.node.snapshot.peer_urls
        if urls is not self._urls:  # a new set: computed once per change, not per request
            self._urls, self._origins = urls, peer_origins(urls)
        return origin in self._origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in READ_PATHS:
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is None or not self.allowed(origin):
            await self.app(scope, receive, send)
            return
        allow = origin.encode("latin-1")

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", ())
                    if k.lower() != b"access-control-allow-origin"
                ]
                headers.append((b"access-control-allow-origin", allow))
                headers.append((b"vary", b"Origin"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_cors)


def _header(scope: Scope, name: bytes) -> str | None:
    """The one value of header ``name``; None if absent, repeated or not text."""
    values: list[bytes] = [v for k, v in scope.get("headers", ()) if k.lower() == name]
    if len(values) != 1:
        return None
    try:
        return values[0].decode("ascii")
    except UnicodeDecodeError:
        return None
