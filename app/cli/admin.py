"""The admin commands, sent to one node's ``/admin`` API with a bearer token.

``switchover [--to NODE]``, ``maintenance on|off [--force]``, ``pause``, ``resume`` and
``member forget NODE`` each POST one request to ``--url`` and print the answer's
fields as ``key=value``. The token comes from ``--token-file`` or
``$VIPMON_ADMIN_TOKEN``. Exit status: 0 accepted; 1 the node cannot be reached, has
no admin API, or refused (the reason printed); 2 no token, or a URL with a path.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from app.cli.common import (
    DEFAULT_NODE_URL,
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    add_client_tls,
    client_verify,
    node_url,
)
from app.errors import SettingsError

ADMIN_COMMANDS = {
    "switchover": "hand the master role to another node (planned)",
    "maintenance": "put the node at --url in maintenance, or take it out",
    "pause": "pause automatic failover, cluster-wide",
    "resume": "resume automatic failover",
}
"""The commands named after their ``/admin`` path, and their help; ``member`` is apart."""


def add_parsers(sub: Subparsers) -> None:
    """Add the admin commands to ``sub``: those of :data:`ADMIN_COMMANDS`, then ``member``."""
    for name, help_text in ADMIN_COMMANDS.items():
        admin = sub.add_parser(name, help=help_text)
        _add_admin_client(admin)
        if name == "switchover":
            admin.add_argument("--to", help="target node (default: the best eligible one)")
        if name == "maintenance":
            admin.add_argument("state", choices=["on", "off"])
            admin.add_argument(
                "--force",
                action="store_true",
                help="with on: go ahead even if this node is the last that could be master",
            )
        admin.set_defaults(func=send_admin)
    member = sub.add_parser("member", help="the members the cluster keeps listed")
    forget = member.add_subparsers(dest="action", required=True).add_parser(
        "forget",
        help="stop listing a missing member (gone for good); refused while it runs",
    )
    forget.add_argument("node", help="its node id")
    _add_admin_client(forget)
    forget.set_defaults(func=send_admin)


def _add_admin_client(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=DEFAULT_NODE_URL,
        help="the node's API URL (default: %(default)s)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the admin token (default: $VIPMON_ADMIN_TOKEN)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait (default: %(default)s)"
    )
    add_client_tls(parser)


def admin_token(path: Path | None) -> str:
    """The token in ``path``, else ``$VIPMON_ADMIN_TOKEN``; SettingsError if neither."""
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError("token_file", f"cannot read {path}: {exc.strerror}") from exc
    token = os.environ.get("VIPMON_ADMIN_TOKEN", "").strip()
    if not token:
        raise SettingsError("token_file", "give --token-file or set VIPMON_ADMIN_TOKEN")
    return token


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The ``/admin`` action the command names, and its JSON body."""
    if args.command == "switchover":
        return "switchover", {"to": args.to}
    if args.command == "maintenance":
        body: dict[str, Any] = {"enabled": args.state == "on"}
        if args.force:  # only when asked: a node of an older version would refuse the key
            body["force"] = True
        return "maintenance", body
    if args.command == "member":
        return args.action, {"node": args.node}
    return args.command, {}


def send_admin(args: argparse.Namespace) -> int:
    """POST the command to ``--url``'s admin API and print the answer; the exit status."""
    token = admin_token(args.token_file)
    action, body = _request(args)
    url = f"{node_url(args.url)}/admin/{action}"
    try:
        with httpx.Client(timeout=args.timeout, verify=client_verify(args)) as client:
            reply = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        print(f"vipmon: cannot reach {url}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        data = reply.json()
    except ValueError:
        data = {"detail": reply.text.strip()}
    if reply.status_code == 404 and data.get("detail") == "Not Found":
        print(
            f"vipmon {args.command}: the admin API is off on {args.url} "
            "(start that node with --admin-token-file or VIPMON_ADMIN_TOKEN)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if reply.status_code != 200:
        print(
            f"vipmon {args.command}: refused ({reply.status_code}): {data.get('detail', data)}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(" ".join(f"{k}={v}" for k, v in data.items()))
    return EXIT_OK
