"""TLS on the HTTP API: the server context, its reload, and the client-certificate guard.

* :func:`build_server_context` reads the certificate, key and optional client
  CA named by the settings into an ``ssl.SSLContext`` (TLS 1.2 or later). A
  file that is missing, unreadable or not a valid certificate/key pair raises
  :class:`~app.errors.SettingsError` naming the setting, so ``vipmon run``
  exits 2 with one line.
* :class:`ServerTls` holds the listener's context. Its ``sni_callback`` runs
  at every handshake (with or without SNI) and hands the connection the
  *current* context, so :meth:`ServerTls.reload` (on SIGHUP) swaps certificate,
  key and client CA for new handshakes only. Open connections keep theirs; a
  reload that fails logs one ERROR and keeps the previous context.
* With ``tls_client_auth = "admin"`` the handshake asks for a client
  certificate but does not require one (a presented one must verify against
  the CA); :class:`app.http.admin.AdminNeedsClientCert` then answers 403 on ``/admin`` paths
  to connections without one. :mod:`app.http.protocol` puts the verified
  certificate into the ASGI scope (the ASGI TLS extension).
* :func:`client_context` is the same loading for the CLI's client side.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.errors import SettingsError
from app.settings import Settings

log = logging.getLogger("vipmon")

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True)
class TlsFiles:
    """The files of the API's TLS, and how client certificates are asked for."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    client_auth: Literal["all", "admin"] = "all"

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles | None:
        """The files the settings name, or None when TLS is off."""
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            return None
        return cls(
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.tls_client_ca_file,
            settings.tls_client_auth,
        )

    @property
    def admin_only(self) -> bool:
        """Client certificates are checked on /admin paths only."""
        return self.client_ca is not None and self.client_auth == "admin"


def _read(path: Path, field: str, marker: bytes, what: str) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(field, f"cannot read {path}: {exc.strerror or exc}") from exc
    if marker not in data:
        raise SettingsError(field, f"{path} holds no PEM {what}")


def _no_password() -> str:
    return ""  # an encrypted key fails to load instead of prompting on a terminal


def load_pair(ctx: ssl.SSLContext, cert: Path, key: Path, fields: tuple[str, str]) -> None:
    """Load a certificate and its key into ``ctx``; SettingsError naming ``fields``."""
    cert_field, key_field = fields
    _read(cert, cert_field, b"-----BEGIN CERTIFICATE-----", "certificate")
    _read(key, key_field, b"PRIVATE KEY-----", "private key")
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            cert_field, f"{cert} and {key} are not a valid certificate and key pair: {exc}"
        ) from exc


def load_ca(ctx: ssl.SSLContext, ca: Path, field: str) -> None:
    """Trust the certificates of ``ca`` in ``ctx``; SettingsError naming ``field``."""
    _read(ca, field, b"-----BEGIN CERTIFICATE-----", "certificate")
    try:
        ctx.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(field, f"{ca} is not a valid CA file: {exc}") from exc


def build_server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context from ``files``. Raises SettingsError naming the bad setting."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    load_pair(ctx, files.cert, files.key, ("tls_cert_file", "tls_key_file"))
    if files.client_ca is not None:
        load_ca(ctx, files.client_ca, "tls_client_ca_file")
        ctx.verify_mode = ssl.CERT_OPTIONAL if files.admin_only else ssl.CERT_REQUIRED
    return ctx


class ServerTls:
    """The API listener's TLS: one context for the listener, swapped per handshake.

    Raises SettingsError from the constructor when the files are unusable.
    """

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.context = build_server_context(files)
        self.current = self.context
        self.context.sni_callback = self._pick

    def _pick(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        current = self.current
        if conn.context is not current:
            conn.context = current

    def reload(self) -> bool:
        """Read the files again for new handshakes. False (and one ERROR) keeps the old ones."""
        try:
            fresh = build_server_context(self.files)
        except SettingsError as exc:
            log.error("TLS reload failed, keeping the previous certificate: %s", exc)
            return False
        self.current = fresh
        log.info("TLS reloaded from %s and %s", self.files.cert, self.files.key)
        return True


def client_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` takes for the CLI's ``--ca-file/--cert-file/--key-file``.

    True (the system's CAs, no client certificate) when none is given.
    Raises SettingsError naming the option.
    """
    if ca_file is None and cert_file is None and key_file is None:
        return True
    if (cert_file is None) != (key_file is None):
        raise SettingsError("cert_file", "give --cert-file and --key-file together")
    ctx = ssl.create_default_context()
    ctx.minimum_version = MINIMUM_VERSION
    if ca_file is not None:
        load_ca(ctx, ca_file, "ca_file")
    if cert_file is not None and key_file is not None:
        load_pair(ctx, cert_file, key_file, ("cert_file", "key_file"))
    return ctx


def peer_tls_extension(ssl_object: Any) -> dict[str, Any]:
    """The ASGI TLS extension of a connection: its verified client certificate, if any."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }
