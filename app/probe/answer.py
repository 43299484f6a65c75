"""What a probe is told: the one-line body, the status, and the agent-check line.

Every function here is pure: a snapshot and a role (or a monotonic instant)
in, bytes or text out. The role is computed by the caller at the moment of the
request with ``snapshot.role_at(clock.now())``, so an answer fails closed the
instant the lease deadline passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.role import Role, Snapshot

#: Which snapshot/role pair earns a 200 on each probe route.
Verdict = Callable[[Snapshot, Role], bool]


def is_master(snap: Snapshot, role: Role) -> bool:
    """``/monitor`` and ``/``: positive only on the master."""
    return role is Role.MASTER


def is_healthy_standby(snap: Snapshot, role: Role) -> bool:
    """``/monitor/standby``: positive on a standby that knows its master."""
    return role is Role.STANDBY and snap.leader_id is not None


#: The probe routes, their verdicts, and the methods each accepts.
PROBE_ROUTES: dict[str, Verdict] = {
    "/monitor": is_master,
    "/": is_master,
    "/monitor/standby": is_healthy_standby,
}
PROBE_METHODS = ("GET", "HEAD", "OPTIONS")


def monitor_line(snap: Snapshot, role: Role) -> str:
    """The one-line body of /monitor, e.g. ``ROLE=STANDBY node=n2 term=7 leader=n1``."""
    line = f"ROLE={role.value} node={snap.node_id} term={snap.term}"
    if role is Role.STANDBY and snap.leader_id:
        line += f" leader={snap.leader_id}"
    if snap.paused:
        line += " paused=yes"
    if snap.check_configured:
        line += " check=ok" if snap.check_ok else f" check=failing({_plain(snap.check_detail)})"
    return line + "\n"


def _plain(text: str) -> str:
    """Free text made safe for a one-line body: no '=' (no fake tokens), no newlines."""
    cleaned = " ".join(text.replace("=", ":").replace("(", "[").replace(")", "]").split())
    return cleaned[:120]


@dataclass(frozen=True)
class ProbeText:
    """The parts of a probe answer that depend on the snapshot and role alone."""

    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def of(cls, snap: Snapshot, role: Role) -> ProbeText:
        body = monitor_line(snap, role).encode("utf-8", errors="replace")
        return cls(
            body,
            (
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"cache-control", b"no-store"),
                (b"x-vipmon-role", role.value.encode("ascii")),
                (b"x-vipmon-term", str(snap.term).encode("ascii")),
            ),
        )


class ProbeWords:
    """A one-entry cache of :class:`ProbeText`: a new text only when the snapshot or role changes.

    The entry is one tuple, replaced whole, so a reader on another thread sees
    a matching snapshot, role and text or none.
    """

    def __init__(self) -> None:
        empty = ProbeText(b"", ())
        self._entry: tuple[Snapshot | None, Role | None, ProbeText] = (None, None, empty)

    def text(self, snap: Snapshot, role: Role) -> ProbeText:
        cached_snap, cached_role, text = self._entry
        if snap is not cached_snap or role is not cached_role:
            text = ProbeText.of(snap, role)
            self._entry = (snap, role, text)
        return text


def agent_reply(snap: Snapshot, now: float) -> str:
    """The agent-check line for ``snap`` at monotonic ``now``, newline included.

    ``ready`` in the negative reply is deliberate: see :mod:`app.probe.agent`.
    """
    role = snap.role_at(now)
    if role is Role.MASTER:
        return "up ready\n"
    if role is Role.DRAINING:
        return "drain\n"
    if role is Role.MAINTENANCE:
        return "maint\n"
    return f"down ready #{monitor_line(snap, role).strip()}\n"
