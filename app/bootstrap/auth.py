"""``vipmon bootstrap auth``: etcd's users, the least-privilege role, then ``auth enable``.

Run once against the running cluster, from the admin host, with the admin
client certificate (empty subject) and the passwords kept in ``DIR/admin``. Through
etcd's JSON gateway (one POST per call, like :mod:`app.store.etcd_client`, but
synchronous and one-shot: no rotation during a call, no lease logic), it makes:

* the user ``root`` with the role ``root`` (etcd needs it to enable auth);
* the role ``vipmon``: read-write on ``/vipmon/<cluster>/`` and nothing else,
  which is every key vipmon reads, writes or watches (lease grant and keepalive
  need no permission);
* the user ``vipmon`` with the password the bundles hold, granted that role;
* ``auth enable``, and last a login as ``vipmon`` to prove the password works.

Idempotent: once auth is on it logs in as root and checks each item again (an
existing ``vipmon`` user gets the bundles' password again). Every step is one
line in the result. Raises :class:`AuthStepError` with etcd's own words when a
step fails; no password or token is ever in a message.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Sequence
from typing import Any

import httpx

from app.bootstrap.plan import ETCD_USER
from app.election.records import cluster_prefix
from app.errors import StoreProtocolError, VipmonError
from app.store.etcd import prefix_range_end
from app.store.etcd_client import grpc_error, parse_first_json, path_prefix

ROLE = "vipmon"


class AuthStepError(VipmonError):
    """A step of ``bootstrap auth`` failed; the message says which and etcd's reason."""


class Gateway:
    """One etcd endpoint's JSON gateway, picked as the first of ``endpoints`` that answers."""

    def __init__(
        self, endpoints: Sequence[str], verify: ssl.SSLContext, timeout: float = 5.0
    ) -> None:
        self.client = httpx.Client(verify=verify, timeout=timeout, trust_env=False)
        self.token: str | None = None
        failures = []
        for endpoint in endpoints:
            try:
                reply = self.client.get(endpoint + "/version")
                version = str(reply.json()["etcdserver"])
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                failures.append(f"{endpoint}: {exc}")
                continue
            self.base = endpoint + path_prefix(version)
            self.endpoint = endpoint
            return
        self.client.close()
        raise AuthStepError("no etcd endpoint answered: " + "; ".join(failures))

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """POST ``body``; (the reply, None), or ({}, etcd's error message)."""
        headers = {"Authorization": self.token} if self.token else {}
        try:
            reply = self.client.post(self.base + method, json=body, headers=headers)
            data = parse_first_json(reply.content)
        except (httpx.HTTPError, StoreProtocolError) as exc:
            raise AuthStepError(f"{method} on {self.endpoint}: {exc}") from None
        error = grpc_error(data)
        if error is not None:
            return {}, error[1]
        if reply.is_error:
            return {}, f"HTTP {reply.status_code}"
        return data, None

    def must(self, method: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        data, error = self.call(method, body)
        if error is not None:
            raise AuthStepError(f"{what}: etcd says {error!r}")
        return data

    def ensure(self, method: str, body: dict[str, Any], what: str) -> str:
        """Create something, treating "already exists" as done; one line saying which."""
        _, error = self.call(method, body)
        if error is None:
            return f"created {what}"
        if "already exists" in error:
            return f"{what} exists"
        raise AuthStepError(f"creating {what}: etcd says {error!r}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _login_as_root(gateway: Gateway, password: str) -> bool:
    """True (and the token kept) if auth is on; False if it is off."""
    data, error = gateway.call("/auth/authenticate", {"name": "root", "password": password})
    if error is None:
        gateway.token = str(data["token"])
        return True
    if "not enabled" in error:
        return False
    raise AuthStepError(f"auth is on, and etcd refused root's password: {error!r}")


def enable_auth(
    gateway: Gateway, cluster: str, root_password: str, vipmon_password: str
) -> list[str]:
    """Make the users and role and enable auth (see the module); one line per step."""
    already_on = _login_as_root(gateway, root_password)
    lines = ["auth is on: checked as root" if already_on else "auth is off: setting it up"]
    lines.append(
        gateway.ensure("/auth/user/add", {"name": "root", "password": root_password}, "user root")
    )
    lines.append(gateway.ensure("/auth/role/add", {"name": "root"}, "role root"))
    gateway.must("/auth/user/grant", {"user": "root", "role": "root"}, "granting role root")
    lines.append(gateway.ensure("/auth/role/add", {"name": ROLE}, f"role {ROLE}"))
    prefix = cluster_prefix(cluster).encode()
    perm = {
        "permType": "READWRITE",
        "key": _b64(prefix),
        "range_end": _b64(prefix_range_end(prefix)),
    }
    gateway.must("/auth/role/grant", {"name": ROLE, "perm": perm}, f"granting role {ROLE}")
    lines.append(f"role {ROLE}: readwrite on {prefix.decode()} (prefix)")
    user = {"name": ETCD_USER, "password": vipmon_password}
    made = gateway.ensure("/auth/user/add", user, f"user {ETCD_USER}")
    if made.endswith("exists"):
        gateway.must("/auth/user/changepw", user, f"setting the password of {ETCD_USER}")
        made += ", password set to the bundles'"
    lines.append(made)
    gateway.must("/auth/user/grant", {"user": ETCD_USER, "role": ROLE}, f"granting {ROLE}")
    if not already_on:
        gateway.must("/auth/enable", {}, "enabling auth")
        lines.append("auth enabled")
    gateway.token = None
    data = gateway.must("/auth/authenticate", user, f"logging in as {ETCD_USER}")
    if not data.get("token"):
        raise AuthStepError(f"logging in as {ETCD_USER}: etcd gave no token")
    lines.append(f"user {ETCD_USER} logs in")
    return lines
