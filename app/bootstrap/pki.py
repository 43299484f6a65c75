"""The cluster's CA and every certificate a bundle needs, made with ``cryptography``.

Keys are EC P-256. The CA is valid for 10 years, what it issues for 3 (re-issue a
host's files with ``vipmon bootstrap add-host --replace`` before then). Kinds:

* etcd's member certificate, for clients and peers alike: server *and* client
  usages, since with ``client-cert-auth`` etcd's JSON gateway presents it to
  etcd's own gRPC port, and peers present it to each other; the host's address
  and name in its SANs;
* vipmon's etcd client certificate, and the admin's: an **empty subject**, since
  with auth on etcd 3.4's gateway answers HTTP 400 to a client certificate that
  has a Common Name (the user comes from the token, never from the certificate);
* the API's server certificate, with the host's address and name in its SANs.

Keys are written with mode 0600 from the start (never created readable, then
narrowed).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = dt.timedelta(days=1)
CA_DAYS = 3650
LEAF_DAYS = 1095


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, in PEM."""

    cert: bytes
    key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str | None) -> x509.Name:
    if common_name is None:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CA:
    """The cluster's certificate authority: :meth:`create` a new one or :meth:`load` it."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self._key = key

    @classmethod
    def create(cls, cluster: str) -> CA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"vipmon {cluster} CA")
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + CA_DAYS * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CA:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self._key)

    def issue(
        self,
        common_name: str | None,
        sans: tuple[str, ...] = (),
        *,
        server: bool,
        client: bool,
    ) -> Pair:
        """A certificate signed by this CA; ``common_name=None`` leaves the subject empty.

        ``sans`` are IP addresses or DNS names. An empty subject needs the SAN
        extension marked critical (RFC 5280 4.2.1.6), so such a certificate gets
        one only when ``sans`` is given.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + LEAF_DAYS * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
        )
        if sans:
            alt = x509.SubjectAlternativeName([_general_name(s) for s in sans])
            builder = builder.add_extension(alt, critical=common_name is None)
        cert = builder.sign(self._key, hashes.SHA256())
        return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def member_pair(ca: CA, name: str, address: str) -> Pair:
    """etcd's certificate for a member: client URLs and peer URLs, both usages."""
    return ca.issue(name, (address, name), server=True, client=True)


def api_pair(ca: CA, name: str, address: str) -> Pair:
    """The HTTPS certificate of a node's API."""
    return ca.issue(name, (address, name, "127.0.0.1", "localhost"), server=True, client=False)


def client_pair(ca: CA) -> Pair:
    """A client certificate with an empty subject, for etcd's gateway with auth on."""
    return ca.issue(None, server=False, client=True)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file created with mode 0600 (replacing any file there)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
