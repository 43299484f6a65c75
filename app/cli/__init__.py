"""vipmon: tells a load balancer which node of a cluster holds the master role.

``run`` (one node), ``status`` and the admin commands (clients of a running node)
and ``openapi`` live here; ``history``, ``adc-config`` and ``demo`` in modules of
their own, and what they all share in :mod:`app.cli.common`. Setting errors end the
process with status 2 and one line naming the field and the reason, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import httpx

from app import __version__
from app.cli import adc, demo, history
from app.cli.common import (
    DEFAULT_NODE_URL,
    EXIT_USAGE,
    Command,
    OneLineParser,
    add_client_tls,
    client_verify,
    node_url,
)
from app.errors import SettingsError
from app.logs import configure_logging
from app.settings import Settings, load_settings, unknown_variables
from app.status import DEFAULT_URL, HELP_EPILOG, positive_seconds, run_status


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML or YAML file of settings")
    for name, field in Settings.model_fields.items():
        choices = (
            list(get_args(field.annotation)) if get_origin(field.annotation) is Literal else None
        )
        # The choices are named in the help; Settings checks the value, as for a file.
        help_text = _setting_help(name, field.description, field.default, choices)
        if field.annotation is bool:
            parser.add_argument(
                _flag(name), dest=name, action="store_const", const="true", help=help_text
            )
        elif name in ("allow_cidr", "trusted_proxy"):
            parser.add_argument(_flag(name), dest=name, action="append", help=help_text)
        else:
            parser.add_argument(_flag(name), dest=name, default=None, help=help_text)


def _setting_help(
    name: str, description: str | None, default: Any, choices: list[Any] | None
) -> str:
    """A setting's description, its choices, its default and its variable name."""
    parts = [(description or name.replace("_", " ")).rstrip(".")]
    if choices:
        parts.append("one of " + ", ".join(str(c) for c in choices))
    if default not in (None, [], ()):
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        parts.append(f"default: {shown}")
    parts.append(f"env VIPMON_{name.upper()}")
    return "; ".join(parts).replace("%", "%%")


def _add_admin_client(parser: argparse.ArgumentParser) -> None:
    """The options of a command sent to a node's admin API."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="vipmon",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--version", action="version", version=f"vipmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one node: join the election, serve the API")
    _add_setting_flags(run)

    status = sub.add_parser(
        "status",
        help="ask every node for its role; say which one is master",
        description="Ask every node what it is right now, and whether the cluster has a master.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "--url",
        action="append",
        help="a node's API URL, repeatable: the first that answers lists the members "
        f"(default: {DEFAULT_URL})",
    )
    status.add_argument(
        "--timeout",
        type=positive_seconds,
        default=2.0,
        help="seconds per request (default: %(default)s)",
    )
    status.add_argument("--watch", action="store_true", help="redraw every second until Ctrl-C")
    add_client_tls(status)

    for name, help_text in ADMIN_COMMANDS.items():
        admin = sub.add_parser(name, help=help_text)
        _add_admin_client(admin)
        if name == "switchover":
            admin.add_argument("--to", help="target node (default: the best eligible one)")
        if name == "maintenance":
            admin.add_argument("state", choices=["on", "off"])
    member = sub.add_parser("member", help="the members the cluster keeps listed")
    forget = member.add_subparsers(dest="action", required=True).add_parser(
        "forget",
        help="stop listing a missing member (gone for good); refused while it runs",
    )
    forget.add_argument("node", help="its node id")
    _add_admin_client(forget)

    spec = sub.add_parser("openapi", help="write the OpenAPI spec")
    spec.add_argument("--output", type=Path, default=Path("openapi/openapi.json"))

    history.add_parser(sub)
    adc.add_parser(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "status":
            return run_status(args.url, args.timeout, client_verify(args), watch=args.watch)
        if args.command == "openapi":
            return _openapi(args.output)
        if args.command in ADMIN_COMMANDS or args.command == "member":
            return _admin(args)
        command: Command = args.func
        return command(args)
    except SettingsError as exc:
        print(f"vipmon: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    cli = {name: getattr(args, name) for name in Settings.model_fields}
    settings = load_settings(cli, args.config)
    configure_logging(settings.log_level, settings.log_format, settings.node_id)
    log = logging.getLogger("vipmon")
    for line in settings.set_aside:
        log.info("%s", line)
    for line in unknown_variables(os.environ):
        log.warning("%s", line)
    from app.server import serve

    return serve(settings)


ADMIN_COMMANDS = {
    "switchover": "hand the master role to another node (planned)",
    "maintenance": "put the node at --url in maintenance, or take it out",
    "pause": "pause automatic failover, cluster-wide",
    "resume": "resume automatic failover",
}


def _admin_token(path: Path | None) -> str:
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError("token_file", f"cannot read {path}: {exc.strerror}") from exc
    token = os.environ.get("VIPMON_ADMIN_TOKEN", "").strip()
    if not token:
        raise SettingsError("token_file", "give --token-file or set VIPMON_ADMIN_TOKEN")
    return token


def _admin(args: argparse.Namespace) -> int:
    token = _admin_token(args.token_file)
    body: dict[str, Any] = {}
    if args.command == "switchover":
        body = {"to": args.to}
    elif args.command == "maintenance":
        body = {"enabled": args.state == "on"}
    elif args.command == "member":
        body = {"node": args.node}
    action = args.action if args.command == "member" else args.command
    url = f"{node_url(args.url)}/admin/{action}"
    try:
        with httpx.Client(timeout=args.timeout, verify=client_verify(args)) as client:
            reply = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        print(f"vipmon: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
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
        return 1
    if reply.status_code != 200:
        print(
            f"vipmon {args.command}: refused ({reply.status_code}): {data.get('detail', data)}",
            file=sys.stderr,
        )
        return 1
    print(" ".join(f"{k}={v}" for k, v in data.items()))
    return 0


def _openapi(output: Path) -> int:
    from app.http.spec import render_spec

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_spec(), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
