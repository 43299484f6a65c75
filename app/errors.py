"""The one exception tree of vipmon.

Every error the service raises on purpose derives from :class:`VipmonError`.
Lower layers translate foreign exceptions (httpx, sqlite3, pydantic) into one
of these with ``raise ... from``; the boundaries (the CLI, the election loop,
the HTTP layer) map them to an exit status, a role or a 4xx body.
"""

from __future__ import annotations


class VipmonError(Exception):
    """Root of every error vipmon raises on purpose."""


class SettingsError(VipmonError):
    """A setting is invalid. The CLI prints it and exits with status 2."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid setting {field!r}: {reason}")
        self.field = field
        self.reason = reason


class ArgumentError(VipmonError):
    """A command-line argument of a generator command is invalid: the CLI prints one
    line, ``argument ARG: reason``, and exits with status 2."""

    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"argument {argument}: {reason}")
        self.argument = argument
        self.reason = reason


class StoreError(VipmonError):
    """The coordination store could not give an answer.

    The caller cannot tell what the store holds now; the election treats this
    as "unknown" and never as permission to turn positive.
    """


class StoreUnavailable(StoreError):
    """No endpoint answered in time, or every endpoint answered 5xx."""


class StoreNoLeader(StoreUnavailable):
    """The store answered but has no quorum (etcd: "no leader")."""


class StoreAuthError(StoreError):
    """The store refused our credentials."""


class StoreProtocolError(StoreError):
    """The store answered something we cannot parse."""


class StoreForeignHost(StoreError):
    """The embedded store's file is used by another live host (another boot).

    Its leases run on that boot's clock, which this host cannot read, so this
    node must neither judge nor drop them: it refuses to start, or, already
    running, stays negative. The embedded store is for one host.
    """


class StoreLeaseGone(StoreError):
    """The store no longer knows the lease a write was bound to.

    Not an outage: the store answered. The caller has lost that lease.
    """


class ElectionCrashed(VipmonError):
    """A loop of the election ended by itself: a bug. The node has resigned."""


class Conflict(VipmonError):
    """An admin request cannot be carried out now; the message says why (HTTP 409)."""


class SwitchoverFailed(Conflict):
    """A switchover could not start or did not finish in time; the message says why."""


class FenceError(VipmonError):
    """The kernel fence could not be read or changed; the message is nft's own.

    A node whose fence fails is negative (see :mod:`app.fence`).
    """


class FenceUnavailable(FenceError):
    """This host cannot run the fence at all: no libnftables, or no CAP_NET_ADMIN."""
