"""Wake-ups for the embedded store's watchers: one datagram per committed change.

The embedded store has no server to push changes, and polling its file costs a
thread hop and a write lock each time. Instead every store object that
watches binds a UNIX datagram socket in a directory beside the database
(``<db>.wake/``), and every store object that commits a change to a key sends
one byte to each socket there. Processes on the host, and several store
objects in one process, wake each other at once; an idle node sleeps.

A socket whose process died refuses the datagram and is removed. A full
queue drops the byte, which is harmless: the watcher has a wake-up pending
already. When the directory cannot be used (read-only, no permission), there
are no wake-ups and the watcher polls; see :class:`app.store.local.LocalStore`.

Socket paths longer than a ``sockaddr_un`` allows are reached through
``/proc/self/fd/<dir fd>/``, so a deep state directory works too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from pathlib import Path

log = logging.getLogger("vipmon.store")

_MAX_SOCKET_PATH = 100  # sockaddr_un holds 108 bytes, NUL included
_SUFFIX = ".sock"


class WakeDir:
    """The directory of wake-up sockets of one database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dir_fd: int | None = None

    def _address(self, name: str) -> str:
        direct = str(self.path / name)
        if len(direct.encode()) <= _MAX_SOCKET_PATH:
            return direct
        if self._dir_fd is None:
            self._dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    def listen(self) -> Wakeups | None:
        """Bind a new socket here, or None (and a debug line) when that is impossible."""
        name = f"{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.path.mkdir(exist_ok=True)
            sock.bind(self._address(name))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.debug("no wake-ups in %s (%s): watchers poll", self.path, exc)
            return None
        return Wakeups(sock, self.path / name)

    def notify(self) -> None:
        """Send one byte to every socket here. Never raises."""
        try:
            names = [n for n in os.listdir(self.path) if n.endswith(_SUFFIX)]
        except OSError:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for name in names:
                try:
                    sock.sendto(b"!", self._address(name))
                except ConnectionRefusedError:  # its process is gone
                    with contextlib.suppress(OSError):
                        (self.path / name).unlink()
                except OSError:  # gone already, queue full, no permission: nothing to do
                    pass

    def close(self) -> None:
        fd, self._dir_fd = self._dir_fd, None
        if fd is not None:
            os.close(fd)


class Wakeups:
    """One bound socket, read on the event loop: a counter of wake-ups received.

    A watcher notes :attr:`generation` before it reads the store, then calls
    :meth:`wait` with it, so a change committed between the read and the wait
    is never missed.
    """

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path
        self.generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self.sock.fileno())
            self._loop = loop
            self._event = asyncio.Event()
            loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(OSError):
            while self.sock.recv(64):
                pass
        self.generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, generation: int, timeout: float) -> None:
        """Return once a wake-up newer than ``generation`` came, or after ``timeout`` s."""
        self._attach()
        if self.generation != generation:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)

    def close(self) -> None:
        """Stop listening and remove the socket. Safe to call twice."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError, ValueError):  # loop of another thread
                self._loop.remove_reader(self.sock.fileno())
        self._loop = None
        if self.sock.fileno() >= 0:
            self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
