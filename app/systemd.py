"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``), without a dependency.

When systemd starts vipmon with ``NOTIFY_SOCKET`` set, vipmon sends, as datagrams on
that AF_UNIX socket (a name starting with ``@`` is in the abstract namespace):

* ``READY=1`` once the HTTP API serves, with a ``STATUS=`` line;
* ``STATUS=<role> ...`` on every role transition;
* ``WATCHDOG=1`` every half ``WATCHDOG_USEC``, but only while the election loop makes
  progress (its heartbeat is fresher than the liveness window ``/health/live`` uses), so
  a node whose election loop hangs stops pinging and systemd restarts it;
* ``STOPPING=1`` when SIGTERM or SIGINT starts the hand-over.

Without ``NOTIFY_SOCKET`` every call does nothing. Sending never blocks and never
raises: a lost notification is logged at debug level and the node carries on.
``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` are removed from the
environment once read, so hooks and check commands do not inherit them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, MutableMapping

from app.clock import Clock
from app.role import Transition

log = logging.getLogger("vipmon.systemd")

_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends notify messages to one socket address; ``None`` address: sends nothing."""

    def __init__(self, address: str | None, watchdog_usec: int = 0) -> None:
        self.address = address
        #: The watchdog period systemd asked for, in microseconds; 0 when off.
        self.watchdog_usec = watchdog_usec if address else 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """The notifier ``environ`` (default ``os.environ``) asks for; the variables go."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec_text = env.get("WATCHDOG_USEC", "")
        pid_text = env.get("WATCHDOG_PID", "")
        for name in _ENV:
            env.pop(name, None)
        usec = int(usec_text) if usec_text.isdigit() else 0
        if pid_text and pid_text != str(os.getpid()):
            usec = 0  # the watchdog is meant for another process
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one newline-separated message. True if it was sent."""
        if self._sock is None or self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        message = "\n".join(field.replace("\n", " ") for field in fields).encode()
        try:
            with self._lock:
                self._sock.sendto(message, target)
        except OSError as exc:
            log.debug("notify %s to %s failed: %s", fields, self.address, exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class StatusObserver:
    """An election observer that sends ``STATUS=`` on every role transition.

    Before :meth:`ready` it only remembers the latest status; ``ready`` sends it with
    ``READY=1``, so systemd never hears of a role before it hears the node is up.
    """

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.status = "UNKNOWN: starting"
        self._ready = False
        self._lock = threading.Lock()

    def transition(self, t: Transition, term: int) -> None:
        with self._lock:
            self.status = f"{t.to_role.value} term={term}: {t.reason}"
            if self._ready:
                self.notifier.send(f"STATUS={self.status}")

    def ready(self, detail: str) -> None:
        """Send READY=1 with the latest status; from now on every transition is sent."""
        with self._lock:
            self._ready = True
            self.notifier.send("READY=1", f"STATUS={self.status} ({detail})")

    def renew_latency(self, seconds: float) -> None:
        pass

    def store_error(self, kind: str) -> None:
        pass


class Watchdog:
    """Pings systemd's watchdog while a heartbeat stays fresh.

    ``heartbeat`` returns the monotonic instant (on ``clock``) of the election loop's
    last iteration. :meth:`tick` sends ``WATCHDOG=1`` only when that instant is less
    than ``max_stale`` s old; the thread started by :meth:`start` calls it every
    ``interval`` s (half the watchdog period) until :meth:`stop`.
    """

    def __init__(
        self,
        notifier: Notifier,
        heartbeat: Callable[[], float],
        clock: Clock,
        *,
        max_stale: float,
        interval: float | None = None,
    ) -> None:
        self.notifier = notifier
        self.heartbeat = heartbeat
        self.clock = clock
        self.max_stale = max_stale
        self.interval = interval if interval is not None else notifier.watchdog_usec / 2e6
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stale_logged = False

    def tick(self) -> bool:
        """Ping if the heartbeat is fresh. True if a ping was sent."""
        stale = self.clock.now() - self.heartbeat()
        if stale >= self.max_stale:
            if not self._stale_logged:
                log.warning("election loop silent for %.1f s: watchdog pings stop", stale)
                self._stale_logged = True
            return False
        self._stale_logged = False
        return self.notifier.send("WATCHDOG=1")

    def start(self) -> None:
        """Start pinging on a daemon thread; does nothing if the watchdog is off."""
        if self.interval <= 0 or not self.notifier.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="vipmon-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 1.0)


class Systemd:
    """What ``vipmon run`` tells systemd: READY, STATUS, WATCHDOG and STOPPING.

    Built from the environment by :meth:`from_environ`; every method does nothing
    when systemd did not ask for notifications.
    """

    def __init__(self, notifier: Notifier, watchdog: Watchdog) -> None:
        self.notifier = notifier
        self.watchdog = watchdog
        self.observer = StatusObserver(notifier)

    @classmethod
    def from_environ(
        cls, heartbeat: Callable[[], float], clock: Clock, *, max_stale: float
    ) -> Systemd:
        notifier = Notifier.from_environ()
        return cls(notifier, Watchdog(notifier, heartbeat, clock, max_stale=max_stale))

    def ready(self, detail: str) -> None:
        """The API serves: send READY=1 and start the watchdog pings."""
        self.observer.ready(detail)
        self.watchdog.start()

    def stopping(self) -> None:
        """Shutdown started: stop the pings, then send STOPPING=1."""
        self.watchdog.stop()
        self.notifier.send("STOPPING=1", "STATUS=stopping: resigning")

    def close(self) -> None:
        self.watchdog.stop()
        self.notifier.close()
