"""The floor of ``bench/probe.py``: the least an ASGI app on uvicorn can do per request.

A pure ASGI callable, no framework, that answers every HTTP request with a fixed
``200 ok`` (text/plain) and handles the lifespan protocol so that uvicorn starts
quietly. Run it as ``bench/probe.py`` does, from the repository root::

    python -m uvicorn bench.floor_app:app --http httptools --no-access-log \
        --log-level warning --host 127.0.0.1 --port 8799
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b"ok\n"
HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every request ``200 ok``; acknowledge lifespan start-up and shut-down."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def _lifespan(receive: Receive, send: Send) -> None:
    for _ in range(2):
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
