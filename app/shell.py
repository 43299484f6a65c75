"""Run one ``/bin/sh -c`` command, bounded, in its own process group.

Shared by the role-change hooks and the local health checks. Output goes to
a temporary file (a background child that keeps it open cannot make the
caller wait); on timeout, or once a cancel event is set, the whole process
group is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

OUTPUT_LIMIT = 2048
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class ShellResult:
    """How a command ended. ``returncode`` is None when it timed out or was cancelled."""

    returncode: int | None
    timed_out: bool
    cancelled: bool
    output: str
    errors: str


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child command: ours, less every ``VIPMON_*`` setting, plus ``extra``.

    Inherited ``VIPMON_*`` variables are dropped so that secrets given that way
    (``VIPMON_ETCD_PASSWORD``, ``VIPMON_ADMIN_TOKEN``) never reach a script.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPMON_")}
    env.update(extra or {})
    return env


def run_shell(
    command: str,
    *,
    timeout: float,
    env: Mapping[str, str],
    cancel: threading.Event | None = None,
    separate_errors: bool = False,
) -> ShellResult:
    """Run ``/bin/sh -c command`` in a new session and wait at most ``timeout`` s.

    On timeout, or once ``cancel`` is set, the whole process group gets
    SIGKILL. Output (stdout and stderr merged, or apart with
    ``separate_errors``) is kept to its last :data:`OUTPUT_LIMIT` bytes.
    Raises ``OSError`` only if the shell itself cannot be started.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err if separate_errors else subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
        timed_out = cancelled = False
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            left = deadline - time.monotonic()
            cancelled = cancel is not None and cancel.is_set()
            if left <= 0 or cancelled:
                timed_out = not cancelled
                _kill_group(proc)
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(min(left, _POLL_SECONDS))
        returncode = None if (timed_out or cancelled) else proc.returncode
        return ShellResult(returncode, timed_out, cancelled, _tail(out), _tail(err))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(stream: IO[bytes]) -> str:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - OUTPUT_LIMIT))
    text = stream.read().decode("utf-8", errors="replace").strip()
    return f"[{size - OUTPUT_LIMIT} bytes cut] {text}" if size > OUTPUT_LIMIT else text
