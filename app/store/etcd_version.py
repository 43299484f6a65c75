"""Which etcd releases have the known stale-leader lease bugs.

etcd #12528 and #15247: an etcd leader that has lost its leadership may go on
renewing leases (or revoke them late), so a lease can outlive its TTL as the
rest of the cluster counts it. Fixed in 3.4.31 and 3.5.13; 3.6 never had them;
3.3 and older were never fixed. vipmon's lease margin narrows the window but
does not close it, so on an affected release the full guarantee does not hold.

Pure functions, no I/O: the etcd client calls them with what ``GET /version``
said, ``vipmon status`` with what a node's ``/role`` said.
"""

from __future__ import annotations

import re

#: The bugs, as the warnings name them.
LEASE_BUGS = "etcd #12528 and #15247"
#: The first fixed patch release of each affected minor release.
FIXED_IN = {(3, 4): 31, (3, 5): 13}
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_FIXES = " and ".join(f"{major}.{minor}.{patch}" for (major, minor), patch in FIXED_IN.items())


def parse_version(version: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of ``"3.4.23"`` (a suffix such as ``-rc.1`` is ignored);
    None when ``version`` does not start with three dotted numbers."""
    match = _VERSION.match(version)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def has_lease_bugs(version: tuple[int, int, int]) -> bool:
    """Whether that release has the stale-leader lease bugs."""
    major, minor, patch = version
    if (major, minor) in FIXED_IN:
        return patch < FIXED_IN[(major, minor)]
    return (major, minor) < (3, 4)


def lease_bug_warning(version: str) -> str:
    """The words of a warning about etcd ``version``, or "" when it has no known lease bug.

    A version that cannot be read is not called safe: the words say so.
    """
    parsed = parse_version(version)
    if parsed is None:
        return (
            f"cannot tell whether etcd version {version!r} has the stale-leader lease bugs "
            f"{LEASE_BUGS} (fixed in {_FIXES})"
        )
    if not has_lease_bugs(parsed):
        return ""
    return (
        f"etcd {version} has the stale-leader lease bugs {LEASE_BUGS}, fixed in {_FIXES}: "
        "a deposed etcd leader may keep a lease alive past its TTL, which the lease margin "
        "narrows but does not close; upgrade etcd for the full guarantee"
    )
