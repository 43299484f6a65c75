"""Call an ASGI app in-process through httpx's ASGITransport (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class AsgiClient:
    """A tiny synchronous client: each request runs on a fresh event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
                response = await c.request(method, path, **kwargs)
                await response.aread()
                return response

        return asyncio.run(go())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)
