"""The deadline rule: how long our lease lets us call ourselves master.

``valid_until = t_send + TTL - margin``, where ``t_send`` is read from the
monotonic clock just *before* the grant or keepalive is sent. A reply with no
TTL means the lease is gone now. Errors and timeouts never move the deadline.
The deadline only ever moves forward on a reply; it is never started from the
moment a reply arrives.
"""

from __future__ import annotations

import math

from app.errors import SettingsError


class LeaseDeadline:
    """The fail-closed validity deadline of one lease."""

    def __init__(self, margin: float) -> None:
        if margin <= 0:
            raise SettingsError("lease_margin", "must be positive")
        self.margin = margin
        self.valid_until = -math.inf

    def on_reply(self, t_send: float, ttl: float) -> None:
        """Account for a grant or keepalive reply to a request sent at ``t_send``."""
        if ttl <= 0:
            self.valid_until = -math.inf
            return
        candidate = t_send + ttl - self.margin
        if candidate > self.valid_until:
            self.valid_until = candidate

    def on_lost(self) -> None:
        """The lease is known to be gone (revoked, expired, replaced)."""
        self.valid_until = -math.inf

    def valid(self, now: float) -> bool:
        """True while ``now`` is strictly before the deadline."""
        return now < self.valid_until
