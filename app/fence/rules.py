"""The text of vipmon's nftables table: one table per cluster, two sets, one chain.

``inet vipmon_<cluster>`` (IPv4 and IPv6) holds:

* ``new_ok``: the fenced ports that may take new connections now;
* ``est_ok``: the fenced ports whose established connections may go on now;
* chain ``input`` (filter hook, policy accept): a packet to a fenced port that does
  not come in on ``lo`` is answered with a TCP reset when its permission is absent:
  a new connection (any state but established or related) without ``new_ok``, and,
  with ``--fence-established reset``, a packet of an established connection
  without ``est_ok``.

Both sets have ``flags timeout``: an element is a permission that the kernel drops by
itself when its timeout runs out. Every command here is idempotent, so a table left
by a crash is taken over, emptied, at start.
"""

from __future__ import annotations

import re

SETS = ("new_ok", "est_ok")

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def table_name(cluster: str) -> str:
    """``vipmon_<cluster>``, with every character nft does not take in a name as ``_``."""
    return "vipmon_" + _NOT_NAME.sub("_", cluster)


def _ports(ports: tuple[int, ...]) -> str:
    return ", ".join(str(p) for p in ports)


def install(table: str, ports: tuple[int, ...], established: bool) -> str:
    """Create (or take over) the table with both permissions absent: closed."""
    t, fenced = f"inet {table}", f"tcp dport {{ {_ports(ports)} }}"
    lines = [f"add table {t}"]
    lines += [f"add set {t} {name} {{ type inet_service; flags timeout; }}" for name in SETS]
    lines += [
        f"add chain {t} input {{ type filter hook input priority filter; policy accept; }}",
        f"flush chain {t} input",
        f'add rule {t} input iifname "lo" accept',
        f"add rule {t} input {fenced} ct state != {{ established, related }}"
        f" tcp dport != @new_ok reject with tcp reset",
    ]
    if established:
        lines.append(
            f"add rule {t} input {fenced} ct state {{ established, related }}"
            f" tcp dport != @est_ok reject with tcp reset"
        )
    lines += [f"flush set {t} {name}" for name in SETS]
    return "\n".join(lines) + "\n"


def grant(table: str, ports: tuple[int, ...], sets: tuple[str, ...], timeout_ms: int) -> str:
    """Set each of ``sets`` to hold every port with ``timeout_ms``, in one transaction.

    An ``add`` of an element that exists may keep its old timeout on older kernels,
    so the element is added (so that it exists), deleted and added again with the
    new timeout: the kernel applies the three atomically, and the result is the new
    timeout on every kernel, shorter or longer.
    """
    lines = []
    plain = _ports(ports)
    timed = ", ".join(f"{p} timeout {timeout_ms}ms" for p in ports)
    for name in sets:
        lines += [
            f"add element inet {table} {name} {{ {plain} }}",
            f"delete element inet {table} {name} {{ {plain} }}",
            f"add element inet {table} {name} {{ {timed} }}",
        ]
    return "\n".join(lines) + "\n"


def revoke(table: str, sets: tuple[str, ...]) -> str:
    """Empty each of ``sets``: its connections are refused from now on."""
    return "".join(f"flush set inet {table} {name}\n" for name in sets)


def remove(table: str) -> str:
    """Delete the whole table: the ports are no longer fenced at all."""
    return f"delete table inet {table}\n"


def listing(table: str) -> str:
    return f"list table inet {table}\n"
