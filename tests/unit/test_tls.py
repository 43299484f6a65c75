"""TLS on the API: the settings, the server context, its reload, the /admin guard."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from app.errors import SettingsError
from app.http.admin import AdminNeedsClientCert
from app.http.tls import (
    ServerTls,
    TlsFiles,
    build_server_context,
    client_context,
)
from app.settings import load_settings
from tests.support.certs import CA, Issued
from tests.support.certs import client_context as trusting


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path / "ca")


@pytest.fixture
def server(ca: CA) -> Issued:
    return ca.issue("server")


def refused(**cli: str) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_settings(cli, env={})
    return info.value


@pytest.mark.parametrize(
    ("cli", "field", "words"),
    [
        ({"tls_cert_file": "/c.pem"}, "tls_cert_file", "tls_key_file too"),
        ({"tls_key_file": "/k.pem"}, "tls_key_file", "tls_cert_file too"),
        ({"tls_client_ca_file": "/ca.pem"}, "tls_client_ca_file", "tls_cert_file too"),
        (
            {"tls_cert_file": "/c", "tls_key_file": "/k", "tls_client_auth": "admin"},
            "tls_client_auth",
            "needs tls_client_ca_file",
        ),
        ({"tls_client_auth": "some"}, "tls_client_auth", "'all' or 'admin'"),
    ],
)
def test_tls_settings_are_refused_naming_the_field(cli, field, words):
    err = refused(**cli)
    assert err.field == field
    assert words in err.reason


def test_tls_turns_the_default_advertise_url_to_https(server: Issued):
    files = {"tls_cert_file": str(server.cert), "tls_key_file": str(server.key)}
    s = load_settings({"host": "10.1.2.3", "port": "8443", **files}, env={})
    assert s.effective_advertise_url == "https://10.1.2.3:8443"
    assert load_settings({"host": "10.1.2.3"}, env={}).effective_advertise_url.startswith("http:")


def files(pair: Issued, **kw: Any) -> TlsFiles:
    return TlsFiles(pair.cert, pair.key, **kw)


def test_unusable_files_name_their_setting(tmp_path: Path, ca: CA, server: Issued):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    other = ca.issue("other")
    cases = [
        (TlsFiles(tmp_path / "missing.crt", server.key), "tls_cert_file", "cannot read"),
        (TlsFiles(server.cert, tmp_path / "missing.key"), "tls_key_file", "cannot read"),
        (TlsFiles(garbage, server.key), "tls_cert_file", "no PEM certificate"),
        (TlsFiles(server.cert, garbage), "tls_key_file", "no PEM private key"),
        (TlsFiles(server.cert, other.key), "tls_cert_file", "not a valid certificate and key"),
        (files(server, client_ca=garbage), "tls_client_ca_file", "no PEM certificate"),
    ]
    for given, field, words in cases:
        with pytest.raises(SettingsError) as info:
            build_server_context(given)
        assert (info.value.field, words in info.value.reason) == (field, True), info.value


def test_the_context_refuses_tls_below_1_2(server: Issued, ca: CA):
    ctx = build_server_context(files(server))
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode is ssl.CERT_NONE
    assert build_server_context(files(server, client_ca=ca.cert)).verify_mode is ssl.CERT_REQUIRED
    admin = files(server, client_ca=ca.cert, client_auth="admin")
    assert build_server_context(admin).verify_mode is ssl.CERT_OPTIONAL


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bytes:
    """A handshake over memory BIOs; the server certificate the client saw (DER)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    srv = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client), ("server", srv)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            cert = client.getpeercert(binary_form=True)
            assert cert is not None
            return cert
    raise AssertionError("the handshake did not finish in 20 rounds")


def der(pair: Issued) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pair.cert.read_text())


def replace(target: Issued, source: Issued) -> None:
    target.cert.write_bytes(source.cert.read_bytes())
    target.key.write_bytes(source.key.read_bytes())


def test_reload_swaps_the_certificate_for_new_handshakes(tmp_path: Path, ca: CA, server: Issued):
    tls = ServerTls(files(server))
    first = der(server)
    assert handshake(tls.context, trusting(ca)) == first
    second_ca = CA(tmp_path / "ca2", name="second-ca")
    fresh = second_ca.issue("server2")
    replace(server, fresh)
    assert handshake(tls.context, trusting(ca)) == first  # not yet reloaded
    assert tls.reload() is True
    assert handshake(tls.context, trusting(second_ca)) == der(fresh)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls.context, trusting(ca))


def test_failed_reload_keeps_the_previous_certificate(
    ca: CA, server: Issued, caplog: pytest.LogCaptureFixture
):
    tls = ServerTls(files(server))
    first = der(server)
    server.cert.write_text("garbage\n")
    with caplog.at_level(logging.INFO, logger="vipmon"):
        assert tls.reload() is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "tls_cert_file" in errors[0].getMessage()
    assert "keeping the previous certificate" in errors[0].getMessage()
    assert handshake(tls.context, trusting(ca)) == first


def test_reload_swaps_the_client_ca_too(tmp_path: Path, ca: CA, server: Issued):
    client_ca = tmp_path / "clients.crt"
    client_ca.write_bytes(ca.cert.read_bytes())
    tls = ServerTls(files(server, client_ca=client_ca))
    ok = trusting(ca)
    issued = ca.issue("client", client=True, server=False)
    ok.load_cert_chain(issued.cert, issued.key)
    handshake(tls.context, ok)
    client_ca.write_bytes(CA(tmp_path / "ca3", name="other-ca").cert.read_bytes())
    assert tls.reload()
    # TLS 1.3 clients learn of the refusal after their side finished: pin 1.2 to see it.
    ok.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(tls.context, ok)


def test_client_context(ca: CA, server: Issued):
    assert client_context(None, None, None) is True
    ctx = client_context(ca.cert, None, None)
    assert isinstance(ctx, ssl.SSLContext)
    assert handshake(build_server_context(files(server)), ctx) == der(server)
    with pytest.raises(SettingsError) as info:
        client_context(ca.cert, server.cert, None)
    assert info.value.field == "cert_file"
    with pytest.raises(SettingsError) as info:
        client_context(server.key, None, None)
    assert info.value.field == "ca_file"


def call(app: AdminNeedsClientCert, path: str, tls: dict[str, Any] | None) -> int:
    sent: list[dict[str, Any]] = []
    scope: dict[str, Any] = {"type": "http", "path": path, "method": "POST", "headers": []}
    if tls is not None:
        scope["extensions"] = {"tls": tls}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


def test_admin_paths_need_a_client_certificate():
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = AdminNeedsClientCert(inner)
    with_cert = {"client_cert_chain": ["-----BEGIN CERTIFICATE-----..."]}
    assert call(app, "/monitor", None) == 200
    assert call(app, "/monitor", {"client_cert_chain": []}) == 200
    for path in ("/admin", "/admin/pause", "//admin/pause"):
        assert call(app, path, None) == 403, path
        assert call(app, path, {"client_cert_chain": []}) == 403, path
        assert call(app, path, with_cert) == 200, path
    assert call(app, "/administrator", None) == 200
