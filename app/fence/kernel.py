"""libnftables through ctypes: one call per batch of nft commands, no process spawned.

``nft_run_cmd_from_buffer`` runs a whole buffer as one netlink transaction, which the
kernel applies atomically or not at all, and returns its result: 0, or -1 with nft's
message in the error buffer. A refresh that fails is therefore always seen.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Protocol

from app.errors import FenceError, FenceUnavailable

_LIBRARY = "libnftables.so.1"
_NOT_PERMITTED = "Operation not permitted"
_CAP_NET_ADMIN = 12


class Kernel(Protocol):
    """Where the fence's commands go: libnftables here, a model in tests."""

    def run(self, commands: str) -> str:
        """Apply ``commands`` as one transaction; nft's output (listings).

        Raises FenceError with nft's message, FenceUnavailable without the capability.
        """


class Libnftables:
    """One libnftables context, used from one thread at a time (a lock guards it)."""

    def __init__(self) -> None:
        if not has_net_admin():
            raise FenceUnavailable(
                "this process lacks CAP_NET_ADMIN (run as root, or grant the capability: "
                "see the README's deployment forms)"
            )
        self._lib, self._ctx = open_context()
        self._lock = threading.Lock()

    def run(self, commands: str) -> str:
        with self._lock:
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
            err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        if rc != 0:
            message = _first_error(err.decode(errors="replace")) or f"nft returned {rc}"
            if _NOT_PERMITTED in message:
                raise FenceUnavailable(f"{message}: needs CAP_NET_ADMIN in this network namespace")
            raise FenceError(message)
        return out.decode(errors="replace")


def open_context() -> tuple[ctypes.CDLL, int]:
    """Load libnftables, declare the calls used, and make a context whose output and
    errors are buffered. Raises FenceUnavailable. No capability check: the caller's."""
    name = ctypes.util.find_library("nftables") or _LIBRARY
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise FenceUnavailable(
            f"cannot load {_LIBRARY} ({exc}); install Debian's nftables package"
        ) from exc
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
    for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p]
        getattr(lib, fn).restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise FenceUnavailable("libnftables could not make a context")
    lib.nft_ctx_buffer_output(ctx)
    lib.nft_ctx_buffer_error(ctx)
    return lib, ctx


def has_net_admin(status: str = "/proc/self/status") -> bool:
    """Whether CAP_NET_ADMIN is in this process's effective set (by /proc; True if unreadable)."""
    try:
        with open(status, encoding="ascii") as f:
            line = next((x for x in f if x.startswith("CapEff:")), None)
    except OSError:
        return True  # let nft itself say what is wrong
    if line is None:
        return True
    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)


def _first_error(text: str) -> str:
    """nft's first ``Error:`` line, or its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error:"):
            return line.removeprefix("Error:").strip()
    return lines[0] if lines else ""
