"""Role-change hooks: the operator's commands, run in order, never blocking.

:class:`HookRunner` turns each role transition into the operator's commands
(``on_change``, ``on_master``, ``on_standby``) and runs them on one worker
thread, strictly in submission order, one at a time. :meth:`HookRunner.submit`
never blocks the election: it appends to a queue capped at
:data:`QUEUE_LIMIT` transitions, dropping the oldest with a warning.
Each command runs through :func:`app.shell.run_shell`.

Failure modes: a hook that exits non-zero, times out or cannot start is
logged on ``vipmon.hooks`` and the queue moves on; nothing is retried and no
exception reaches the caller of :meth:`HookRunner.submit`.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass

from app.role import Role
from app.settings import Settings
from app.shell import child_env, run_shell

log = logging.getLogger("vipmon.hooks")

QUEUE_LIMIT = 1000
OUTPUT_LIMIT = 2048
_POLL_SECONDS = 0.05
_STOP_GRACE_SECONDS = 1.0


# -- role-change hooks --------------------------------------------------------


@dataclass(frozen=True)
class _Hook:
    name: str
    command: str
    env: dict[str, str]
    log_fields: dict[str, object]


def hooks_for(
    settings: Settings, previous: Role, role: Role, *, first: bool
) -> list[tuple[str, str]]:
    """The ``(name, command)`` pairs one transition runs, in order.

    ``on_change`` always; ``on_master`` on becoming master; ``on_standby`` on
    leaving master, and on the first transition after start when it is not to
    master (a VIP left over from a crash goes then).
    """
    chosen = [("on_change", settings.on_change)]
    if role is Role.MASTER:
        chosen.append(("on_master", settings.on_master))
    elif previous is Role.MASTER or first:
        chosen.append(("on_standby", settings.on_standby))
    return [(name, command) for name, command in chosen if command]


class HookRunner:
    """Runs role-change hooks on one FIFO worker thread.

    Thread-safe: :meth:`submit` may be called from any thread and returns at
    once. Each hook is bounded by ``hook_timeout``; its exit code and output
    are logged.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: collections.deque[list[_Hook]] = collections.deque()
        self._cond = threading.Condition()
        self._running = False
        self._stopping = False
        self._first = True
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._main, name="vipmon-hooks", daemon=True)

    def submit(self, previous: Role, role: Role, term: int, reason: str) -> None:
        """Queue the hooks of one transition. Never blocks; never raises."""
        with self._cond:
            first, self._first = self._first, False
            chosen = hooks_for(self.settings, previous, role, first=first)
            if not chosen:
                return
            if self._stopping:
                log.warning("hooks stopped: %s -> %s not run", previous.value, role.value)
                return
            if len(self._queue) >= QUEUE_LIMIT:
                dropped = self._queue.popleft()
                log.warning(
                    "hook queue full (%d): dropped the oldest transition's %s",
                    QUEUE_LIMIT,
                    ", ".join(h.name for h in dropped),
                )
            self._queue.append([self._hook(n, c, previous, role, term, reason) for n, c in chosen])
            self._cond.notify_all()

    def _hook(
        self, name: str, command: str, previous: Role, role: Role, term: int, reason: str
    ) -> _Hook:
        env = child_env(
            {
                "VIPMON_ROLE": role.value,
                "VIPMON_PREVIOUS_ROLE": previous.value,
                "VIPMON_TERM": str(term),
                "VIPMON_NODE": self.settings.node_id,
                "VIPMON_CLUSTER": self.settings.cluster,
                "VIPMON_REASON": reason,
                "VIPMON_HOOK": name,
            }
        )
        fields: dict[str, object] = {
            "event": "hook",
            "hook": name,
            "node": self.settings.node_id,
            "term": term,
            "from_role": previous.value,
            "to_role": role.value,
            "reason": reason,
        }
        return _Hook(name, command, env, fields)

    def start(self) -> None:
        """Start the worker thread. Hooks submitted before run now, in order."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Run what is queued, for at most ``timeout`` s; then kill and drop the rest.

        Returns within about ``timeout`` + 1 s. Later submissions are dropped.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if not self._thread.is_alive():
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._cancel.set()
            self._thread.join(_STOP_GRACE_SECONDS)

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running. False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._running, timeout)

    def _main(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if not self._queue:
                    return
                batch = self._queue.popleft()
                self._running = True
            try:
                for hook in batch:
                    try:
                        self._run(hook)
                    except Exception:  # a bug: say so, keep the worker alive
                        log.exception("hook %s failed to run", hook.name, extra=hook.log_fields)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    def _run(self, hook: _Hook) -> None:
        fields = hook.log_fields
        if self._cancel.is_set():
            log.warning("hook %s not run: shutting down", hook.name, extra=fields)
            return
        timeout = self.settings.hook_timeout
        try:
            result = run_shell(hook.command, timeout=timeout, env=hook.env, cancel=self._cancel)
        except OSError as exc:
            log.error("hook %s could not start: %s", hook.name, exc, extra=fields)
            return
        output = result.output or "(no output)"
        if result.timed_out or result.cancelled:
            why = f"timed out after {timeout:g} s" if result.timed_out else "cut short by shutdown"
            log.warning(
                "hook %s %s; process group killed; output: %s", hook.name, why, output, extra=fields
            )
            return
        level = logging.INFO if result.returncode == 0 else logging.WARNING
        log.log(
            level,
            "hook %s exited %d (%s -> %s); output: %s",
            hook.name,
            result.returncode,
            fields["from_role"],
            fields["to_role"],
            output,
            extra={**fields, "exit_code": result.returncode},
        )
