"""Local application health gating, like keepalived's ``track_script``.

A :class:`CheckRunner` runs every configured check (``check_http``,
``check_tcp``, ``check_command``) once per ``check_interval`` on a daemon
thread of its own. A round passes when every check passes within
``check_timeout`` all together. The verdict has hysteresis: the node starts
not ok, becomes ok after ``check_rise`` passing rounds in a row, and not ok
again after ``check_fall`` failing rounds in a row.

The verdict is published as a frozen :class:`CheckState`, replaced whole, so
any thread may read :attr:`CheckRunner.state`. ``on_change`` is called from
the checker thread whenever ``ok`` flips; an exception it raises is logged.

Isolation: checks run only on the checker thread. A command check runs in a
process group of its own, killed whole on timeout; the HTTP check reads only
the status line and headers, each step bounded by what is left of the round.
A check that hangs holds up the checker thread and nothing else. Proxies from
the environment are not used for the HTTP check.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.clock import Clock
from app.settings import Settings
from app.shell import child_env, run_shell

log = logging.getLogger("vipmon.checks")

NO_CHECK = "no local check"


@dataclass(frozen=True)
class CheckState:
    """The health verdict. ``since``: monotonic time at which ``ok`` took its value."""

    configured: bool
    ok: bool
    detail: str
    since: float


class _RoundFailed(Exception):
    """One check failed; the message says why."""


class CheckRunner:
    """Runs the local checks and keeps the rise/fall verdict."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        *,
        on_change: Callable[[CheckState], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self._passes = 0
        self._fails = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="vipmon-checks", daemon=True)
        # Built once: loading the CA bundle costs tens of ms, too much for every round.
        self._tls = ssl.create_default_context() if settings.check_http else None
        if settings.has_check:
            detail = f"waiting for {settings.check_rise} passing checks"
            self._state = CheckState(True, False, detail, clock.now())
        else:
            self._state = CheckState(False, True, NO_CHECK, clock.now())

    @property
    def state(self) -> CheckState:
        """The current verdict (a frozen object, replaced whole)."""
        return self._state

    def start(self) -> None:
        """Start the checker thread; does nothing when no check is configured."""
        if self.settings.has_check:
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread, killing a running command check; wait at most ``timeout`` s."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> bool:
        """Run one round of every configured check now. True if the round passed."""
        if not self.settings.has_check:
            return True
        try:
            self._round()
        except _RoundFailed as exc:
            if not self._stop.is_set():  # a round cut short by stop() says nothing
                self._record(False, str(exc))
            return False
        self._record(True, "")
        return True

    # -- the checker thread ---------------------------------------------------

    def _main(self) -> None:
        interval = self.settings.check_interval
        next_round = time.monotonic()
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # a bug: count it as a failed round, keep checking
                log.exception("local check crashed")
                self._record(False, f"check crashed: {exc!r}")
            next_round = max(next_round + interval, time.monotonic())
            self._stop.wait(next_round - time.monotonic())

    # -- verdict ------------------------------------------------------------

    def _record(self, passed: bool, reason: str) -> None:
        rise, fall = self.settings.check_rise, self.settings.check_fall
        with self._lock:
            old = self._state
            if passed:
                self._passes, self._fails = self._passes + 1, 0
                ok = old.ok or self._passes >= rise
                detail = "checks passing" if ok else f"waiting for {rise} passing checks"
                if not ok:
                    detail += f" ({self._passes} so far)"
            else:
                self._passes, self._fails = 0, self._fails + 1
                ok = old.ok and self._fails < fall
                detail = f"{reason} ({self._fails} of {fall} failures)" if ok else reason
            since = old.since if ok == old.ok else self.clock.now()
            new = CheckState(True, ok, detail, since)
            self._state = new
        if ok != old.ok:
            self._changed(new)

    def _changed(self, state: CheckState) -> None:
        if state.ok:
            log.info("local check ok: %s", state.detail, extra={"event": "check"})
        else:
            log.warning("local check failing: %s", state.detail, extra={"event": "check"})
        if self.on_change is not None:
            try:
                self.on_change(state)
            except Exception:
                log.exception("check on_change callback failed")

    # -- one round ------------------------------------------------------------

    def _round(self) -> None:
        """Run each configured check in turn; raise :class:`_RoundFailed` on the first failure."""
        s = self.settings
        deadline = time.monotonic() + s.check_timeout
        if s.check_http:
            _check_http(s.check_http, _left(deadline, s.check_timeout), self._tls)
        if s.check_tcp:
            _check_tcp(s.check_tcp, _left(deadline, s.check_timeout))
        if s.check_command:
            self._check_command(s.check_command, _left(deadline, s.check_timeout))
        if time.monotonic() > deadline:
            raise _RoundFailed(f"checks took longer than {s.check_timeout:g} s")

    def _check_command(self, command: str, timeout: float) -> None:
        result = run_shell(
            command, timeout=timeout, env=child_env(), cancel=self._stop, separate_errors=True
        )
        if result.cancelled:
            raise _RoundFailed("command stopped")
        if result.timed_out:
            raise _RoundFailed(f"command timed out after {timeout:.1f} s")
        if result.returncode != 0:
            lines = (result.errors or result.output).splitlines()
            last = f": {lines[-1].strip()}" if lines else ""
            raise _RoundFailed(f"command exit {result.returncode}{last}")


def _left(deadline: float, budget: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _RoundFailed(f"checks took longer than {budget:g} s")
    return left


def _check_http(url: str, timeout: float, tls: ssl.SSLContext | None) -> None:
    import httpx  # here: a node without an HTTP check never loads it (about 5 MB)

    try:
        with (
            httpx.Client(timeout=timeout, verify=tls or True, trust_env=False) as client,
            client.stream("GET", url) as response,
        ):
            status = response.status_code
    except httpx.TimeoutException:
        raise _RoundFailed(f"http {url}: timed out after {timeout:.1f} s") from None
    except httpx.HTTPError as exc:
        raise _RoundFailed(f"http {url}: {_why(exc)}") from None
    if not 200 <= status < 300:
        raise _RoundFailed(f"http {url}: {status}")


def _check_tcp(hostport: str, timeout: float) -> None:
    host, _, port = hostport.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except TimeoutError:
        raise _RoundFailed(f"tcp {hostport}: timed out after {timeout:.1f} s") from None
    except OSError as exc:
        raise _RoundFailed(f"tcp {hostport}: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    """A short reason: the innermost ``strerror`` in the chain, lower-cased, else the text."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__
