"""The status page (``GET /ui``): one HTML file, read once, sent with a strict policy.

``ui.html`` holds the whole page: markup, one inline ``<style>`` and one
inline ``<script>``, no outside assets. :meth:`StatusPage.load` reads it when
the app is created and computes the sha256 of the script and of the style,
so the ``Content-Security-Policy`` allows exactly those two and nothing else
inline. ``connect-src`` allows this node and the origins of every member URL
this node has seen (``Snapshot.peer_urls``): the page reads the other
members' JSON (see :mod:`app.http.cors`). The policy is built from the
snapshot at each request; nothing is read from disk then.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from app.http.cors import peer_origins
from app.role import Snapshot

_PAGE = "ui.html"
_BLOCKS = {
    tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL | re.IGNORECASE)
    for tag in ("script", "style")
}


def sha256_source(text: str) -> str:
    """A CSP hash source: ``'sha256-<base64 of the digest of text's UTF-8>'``."""
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def _one_block(html: str, tag: str) -> str:
    """The content of the page's only ``<tag>`` element (no attributes allowed)."""
    blocks = _BLOCKS[tag].findall(html)
    if len(blocks) != 1 or html.lower().count(f"<{tag}") != 1:
        raise ValueError(f"{_PAGE} must hold exactly one plain <{tag}> element")
    return str(blocks[0])


@dataclass(frozen=True)
class StatusPage:
    """The page's bytes and the hashes its policy allows."""

    body: bytes
    script_hash: str
    style_hash: str

    @classmethod
    def load(cls) -> StatusPage:
        """Read ``app/http/ui.html`` (shipped as package data) and hash its inline blocks."""
        html = resources.files("app.http").joinpath(_PAGE).read_text(encoding="utf-8")
        return cls.of(html)

    @classmethod
    def of(cls, html: str) -> StatusPage:
        return cls(
            body=html.encode(),
            script_hash=sha256_source(_one_block(html, "script")),
            style_hash=sha256_source(_one_block(html, "style")),
        )

    def policy(self, snapshot: Snapshot) -> str:
        """The ``Content-Security-Policy``: nothing but this page's script and style,
        and reads from this node and its members."""
        connect = " ".join(["'self'", *sorted(peer_origins(snapshot.peer_urls))])
        return "; ".join(
            [
                "default-src 'none'",
                f"script-src {self.script_hash}",
                f"style-src {self.style_hash}",
                f"connect-src {connect}",
                "img-src 'none'",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            ]
        )

    def headers(self, snapshot: Snapshot) -> dict[str, str]:
        return {
            "Content-Security-Policy": self.policy(snapshot),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
