"""The status page route (GET /ui): the file, its policy, and who may load it."""

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass

import pytest

from app.clock import FakeClock
from app.http import ui
from app.http.app import create_app
from app.http.ui import StatusPage
from app.role import Snapshot
from tests.support.asgi import AsgiClient
from tests.support.nodes import REPO

TOKEN = "ui-token-0123456789ab"
PAGE_FILE = REPO / "app" / "http" / "ui.html"
SNAP = Snapshot(
    node_id="n1",
    backend="local",
    peer_urls=frozenset({"http://10.0.1.1:8700", "https://n2.example:8443/", "http://n3:80"}),
)


@dataclass
class Holder:
    snapshot: Snapshot

    async def switchover(self, to):
        raise NotImplementedError

    async def maintenance(self, enabled, force=False):
        raise NotImplementedError

    async def pause(self, paused):
        raise NotImplementedError


def client(networks=(), token: str | None = TOKEN) -> AsgiClient:
    holder = Holder(SNAP)
    app = create_app(
        holder,
        FakeClock(),
        live_window=3.0,
        commands=holder,
        admin_token=token,
        allow_networks=[ipaddress.ip_network(n) for n in networks],
    )
    return AsgiClient(app)


def directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        assert name not in out, f"{name} twice"
        out[name] = values
    return out


def sha256_of(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_ui_serves_the_file_without_a_token():
    r = client().get("/ui")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == PAGE_FILE.read_bytes()
    assert r.headers["cache-control"] == "no-store"


def test_the_policy_allows_only_the_pages_own_script_and_style():
    r = client().get("/ui")
    policy = directives(r.headers["content-security-policy"])
    (script,) = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", r.text, re.DOTALL)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == [sha256_of(script)]
    assert policy["style-src"] == [sha256_of(style)]
    for name in ("img-src", "base-uri", "form-action", "frame-ancestors"):
        assert policy[name] == ["'none'"], name
    assert "unsafe" not in r.headers["content-security-policy"]


def test_connect_src_is_this_node_and_every_member_origin_seen():
    policy = directives(client().get("/ui").headers["content-security-policy"])
    assert policy["connect-src"] == [
        "'self'",
        "http://10.0.1.1:8700",
        "http://n3",
        "https://n2.example:8443",
    ]


def test_the_page_uses_no_outside_asset():
    html = PAGE_FILE.read_text()
    assert not re.search(r"\b(src|href|srcset|action)\s*=", html, re.IGNORECASE)
    assert "@import" not in html and "url(" not in html
    assert "innerHTML" not in html  # every value from a member goes in as text
    for needed in ('id="state"', 'id="source"', 'id="members"', 'id="timeline"'):
        assert needed in html


def test_ui_is_refused_outside_allow_cidr_and_served_inside():
    outside = client(networks=["10.0.0.0/8"]).get("/ui")
    assert outside.status_code == 403
    assert outside.json() == {"detail": "client network not allowed"}
    assert "content-security-policy" not in outside.headers
    assert client(networks=["127.0.0.0/8"]).get("/ui").status_code == 200


def test_ui_is_there_without_an_admin_api_too():
    assert client(token=None).get("/ui").status_code == 200


def test_the_file_is_read_once_when_the_app_is_made(monkeypatch):
    c = client()

    def no_reads(*args, **kwargs):
        raise AssertionError("the page file was read while serving")

    monkeypatch.setattr(ui.resources, "files", no_reads)
    assert c.get("/ui").content == PAGE_FILE.read_bytes()
    assert c.get("/ui").status_code == 200


@pytest.mark.parametrize(
    "html",
    [
        "<style>a{}</style><script>1</script><script>2</script>",
        "<style>a{}</style><script src=x></script><script>1</script>",
        "<style>a{}</style><script type='module'>1</script>",
        "<script>1</script>",
    ],
)
def test_a_page_whose_inline_blocks_cannot_be_hashed_one_by_one_is_refused(html):
    with pytest.raises(ValueError, match="exactly one"):
        StatusPage.of(html)
