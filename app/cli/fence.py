"""``vipmon fence status`` and ``vipmon fence remove``: the kernel fence of this host.

Both talk to nftables in the caller's own network namespace (as root, or with
CAP_NET_ADMIN), not to a node's API: they work with vipmon stopped, hung or gone.

Exit status: 0 done; 1 no fence table for the cluster (status), or nft refused;
2 a bad flag, or no libnftables or no CAP_NET_ADMIN here.
"""

from __future__ import annotations

import argparse
import re
import sys

from app.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Subparsers
from app.errors import FenceError, FenceUnavailable, SettingsError
from app.fence import rules
from app.fence.fence import permissions
from app.fence.kernel import Libnftables
from app.settings import check_name

_FENCED = re.compile(r"tcp dport \{?\s*([\d, ]+?)\s*\}? ct state (!= )?\{")


def add_parser(sub: Subparsers) -> None:
    """Add ``fence status`` and ``fence remove`` to ``sub``."""
    fence = sub.add_parser(
        "fence", help="show or remove this host's kernel fence (nftables, see run --fence-port)"
    )
    actions = fence.add_subparsers(dest="action", required=True)
    status = actions.add_parser(
        "status", help="what the kernel holds now: fenced ports, permissions, time left"
    )
    remove = actions.add_parser(
        "remove",
        help="delete vipmon's table: the ports are no longer fenced (uninstall, emergency); "
        "stop vipmon first, or it puts the table back, closed",
    )
    for parser in (status, remove):
        parser.add_argument(
            "--cluster", default="vipmon", help="the cluster's name (default: %(default)s)"
        )
    status.set_defaults(func=show_status)
    remove.set_defaults(func=remove_table)


def _table(args: argparse.Namespace) -> str:
    try:
        check_name(args.cluster)
    except ValueError as exc:
        raise SettingsError("cluster", f"{args.cluster!r}: {exc}") from exc
    return rules.table_name(args.cluster)


def show_status(args: argparse.Namespace) -> int:
    """Print the table's fenced ports and each permission with the time it has left."""
    table = _table(args)
    try:
        listing = Libnftables().run(rules.listing(table))
    except FenceUnavailable as exc:
        print(f"vipmon fence status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FenceError as exc:
        print(f"vipmon fence status: no table inet {table} here ({exc})", file=sys.stderr)
        return EXIT_FAILURE
    print(format_status(table, listing))
    return EXIT_OK


def format_status(table: str, listing: str) -> str:
    """The status lines for nft's text listing of ``table``."""
    ports, established = "", "keep (not fenced)"
    for found, negated in _FENCED.findall(listing):
        if negated:
            ports = ",".join(p.strip() for p in found.split(","))
        else:
            established = "reset"
    held = permissions(listing)
    lines = [f"table inet {table}: fenced ports {ports or '?'}, established {established}"]
    for set_name, what in (("new_ok", "new connections"), ("est_ok", "established")):
        mine = [p for p in held if p.set_name == set_name]
        if not mine:
            lines.append(f"  {what + ':':17} refused")
            continue
        left = ", ".join(f"{p.port} for {p.expires:.3f} s" for p in mine)
        lines.append(f"  {what + ':':17} allowed: {left}")
    return "\n".join(lines)


def remove_table(args: argparse.Namespace) -> int:
    """Delete the cluster's table."""
    table = _table(args)
    try:
        Libnftables().run(rules.remove(table))
    except FenceUnavailable as exc:
        print(f"vipmon fence remove: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FenceError as exc:
        print(f"vipmon fence remove: cannot delete table inet {table}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"table inet {table} deleted: its ports are no longer fenced on this host")
    return EXIT_OK
