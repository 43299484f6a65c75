"""The permissions as leases in the kernel.

**The argument.** The node may call itself master only before its lease deadline
``valid_until = t_send + TTL - lease_margin`` (:mod:`app.election.lease`), read on the
node's monotonic clock (``CLOCK_BOOTTIME``, :mod:`app.clock`) before the grant or
keepalive was sent. etcd expires the lease no earlier than ``TTL`` after it received
that request, so no other node can hold the key before ``valid_until + lease_margin``.

Each grant of a permission reads the same clock at ``t0``, just before the call, and
gives the kernel element the timeout ``valid_until - FENCE_MARGIN - t0`` (whole
milliseconds, rounded down). The kernel starts that timeout when it applies the
transaction, at some ``t_k`` between ``t0`` and ``t1``, the instant the call returned,
and drops the element on its own clock (jiffies, which run at the rate of
``CLOCK_MONOTONIC`` and so of ``CLOCK_BOOTTIME`` while the host runs) within a jiffy of
``t_k + timeout``. So the element is gone by ``t1 + timeout + JIFFY_SLACK``; after
every call the fence checks that this lies no later than ``valid_until`` and closes at
once if it does not (a call slower than the margin allows). Nothing the process does
after the call extends the element: if vipmon freezes, is killed, or its loop stalls,
the port closes by the kernel's clock no later than the node's own deadline, before
any other node can take the key.

**Its limit.** The kernel's timers do not run while the host is suspended; etcd's
clock, on other hosts, does. A master suspended and resumed keeps its permission for
the rest of its timeout (less than a TTL) after the resume, unless vipmon, whose
``CLOCK_BOOTTIME`` deadline counts the suspend, revokes it first: it does at its next
tick, within a second, if it is not frozen too. Do not suspend a fenced master.

For the role, the permission counts only from ``t0`` to ``t0 + timeout -
JIFFY_SLACK`` (:attr:`Fence.open_until`): the node is master only while the kernel
surely holds it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from dataclasses import dataclass

from app.clock import Clock
from app.errors import FenceError
from app.fence import rules
from app.fence.kernel import Kernel

log = logging.getLogger("vipmon.fence")

FENCE_MARGIN = 0.05  # s: a permission ends this long before the lease deadline, at least
JIFFY_SLACK = 0.01  # s: the kernel counts timeouts in jiffies (4 ms at HZ=250)
_MIN_GRANT_MS = 20  # a permission shorter than this is not granted: the port stays closed
_RETRY = 1.0  # s between tries of putting back a fence that failed


class Fence:
    """One node's fence. Written by the election loop only, through :meth:`sync`.

    ``open_until``: the instant until which the kernel surely lets new connections
    in (``-inf`` while closed). ``error``: why the fence failed, or None; a node whose
    fence failed is negative and does not campaign.
    """

    def __init__(
        self,
        kernel: Kernel,
        clock: Clock,
        table: str,
        ports: tuple[int, ...],
        established: bool,
    ) -> None:
        if not ports:
            raise ValueError("a fence needs at least one port")
        self.kernel, self.clock = kernel, clock
        self.table, self.ports, self.established = table, ports, established
        self.open_until = -math.inf
        self.error: str | None = None
        self._granted: tuple[tuple[str, ...], float] = ((), -math.inf)
        self._retry_at = -math.inf

    @property
    def configured(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        """The kernel confirmed that it holds no permission of ours."""
        return self.error is None and not self._granted[0]

    def install(self) -> None:
        """Create or take over the table, closed. Raises FenceError (or FenceUnavailable)."""
        self.kernel.run(rules.install(self.table, self.ports, self.established))
        self._granted, self.open_until = ((), -math.inf), -math.inf

    def sync(self, new: bool, established: bool, valid_until: float) -> None:
        """Make the kernel hold what the node may do now, bounded by ``valid_until``.

        ``new``: new connections are allowed (the node is master); ``established``:
        established ones may go on (master, or draining). Calls the kernel only when
        the wanted sets or the deadline changed. Never raises: a failure closes what
        it can, sets :attr:`error` and logs one WARNING.
        """
        if self.error is not None and not self._repair():
            return
        wanted = tuple(
            name
            for name, want in (("new_ok", new), ("est_ok", established and self.established))
            if want
        )
        if (wanted, valid_until if wanted else -math.inf) == self._granted:
            return
        t0 = self.clock.now()
        timeout_ms = math.floor((valid_until - FENCE_MARGIN - t0) * 1000) if wanted else 0
        if timeout_ms < _MIN_GRANT_MS:
            wanted, timeout_ms = (), 0
        closed = tuple(name for name in rules.SETS if name not in wanted)
        commands = rules.grant(self.table, self.ports, wanted, timeout_ms) if wanted else ""
        commands += rules.revoke(self.table, closed)
        try:
            self.kernel.run(commands)
        except FenceError as exc:
            self._fail(str(exc))
            return
        t1 = self.clock.now()
        if wanted and t1 + timeout_ms / 1000 + JIFFY_SLACK > valid_until:
            log.warning(
                "fence: granting took %.1f ms, more than the margin allows; closing the "
                "ports until the next renewal",
                (t1 - t0) * 1000,
            )
            self._close_now()
            return
        self._granted = (wanted, valid_until if wanted else -math.inf)
        grants_new = "new_ok" in wanted
        self.open_until = t0 + timeout_ms / 1000 - JIFFY_SLACK if grants_new else -math.inf

    def close(self) -> bool:
        """Revoke every permission now (at exit). True if the kernel confirmed it."""
        self.open_until = -math.inf
        try:
            self.kernel.run(rules.revoke(self.table, rules.SETS))
        except FenceError as exc:
            log.warning("fence: closing failed (%s); the permissions expire by themselves", exc)
            return False
        self._granted = ((), -math.inf)
        return True

    def _close_now(self) -> None:
        if self.close():
            return
        self._fail("closing failed")

    def _fail(self, reason: str) -> None:
        self.open_until = -math.inf
        self._granted = (("?",), math.nan)  # unknown: the next sync calls the kernel
        if self.error is None:
            log.warning(
                "fence on ports %s failed: %s; this node is negative until the fence works",
                ",".join(map(str, self.ports)),
                reason,
            )
        self.error = reason
        self._retry_at = self.clock.now() + _RETRY
        # If this fails too, the permissions expire by themselves, before the deadline.
        with contextlib.suppress(FenceError):
            self.kernel.run(rules.revoke(self.table, rules.SETS))

    def _repair(self) -> bool:
        """After a failure: put the table back, closed, once a second. True if it works."""
        now = self.clock.now()
        if now < self._retry_at:
            return False
        self._retry_at = now + _RETRY
        try:
            self.install()
        except FenceError as exc:
            self.error = str(exc)
            return False
        log.info("fence on ports %s works again (closed)", ",".join(map(str, self.ports)))
        self.error = None
        return True


class NoFence:
    """No ports fenced: the role alone decides."""

    configured = False
    closed = True
    ports: tuple[int, ...] = ()
    established = False
    open_until = math.inf
    error: str | None = None

    def sync(self, new: bool, established: bool, valid_until: float) -> None:
        pass

    def close(self) -> bool:
        return True


@dataclass(frozen=True)
class Permission:
    """One element the kernel holds: a port of a set and the seconds it has left."""

    set_name: str
    port: int
    expires: float


_ELEMENTS = re.compile(r"set (\w+) \{.*?(?:elements = \{(.*?)\})?\s*\}", re.S)
_ELEMENT = re.compile(r"(\d+)(?: timeout \S+)?(?: expires (\S+?))?(?:,|$)")
_UNIT = re.compile(r"(\d+)(d|h|ms|m|s)")
_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def permissions(listing: str) -> list[Permission]:
    """The elements of ``new_ok`` and ``est_ok`` in nft's text listing of the table."""
    found = []
    for name, body in _ELEMENTS.findall(listing):
        if name not in rules.SETS or not body:
            continue
        for port, expires in _ELEMENT.findall(" ".join(body.split())):
            found.append(Permission(name, int(port), _duration(expires) if expires else math.inf))
    return found


def _duration(text: str) -> float:
    return sum(int(n) * _SECONDS[unit] for n, unit in _UNIT.findall(text))
