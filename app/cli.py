"""The ``vipmon`` command: ``run``, ``status`` and ``openapi``.

Setting errors end the process with status 2 and one line naming the field
and the reason, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from app import __version__
from app.errors import SettingsError
from app.settings import Settings, load_settings

EXIT_USAGE = 2


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML or YAML file of settings")
    for name, field in Settings.model_fields.items():
        parser.add_argument(_flag(name), dest=name, default=None, help=field.description or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vipmon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vipmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one node: join the election, serve the API")
    _add_setting_flags(run)

    status = sub.add_parser("status", help="print the cluster as a table")
    status.add_argument("--url", default="http://127.0.0.1:8700", help="any node's API URL")
    status.add_argument("--timeout", type=float, default=2.0)

    spec = sub.add_parser("openapi", help="write the OpenAPI spec")
    spec.add_argument("--output", type=Path, default=Path("openapi/openapi.json"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "status":
            return _status(args.url, args.timeout)
        return _openapi(args.output)
    except SettingsError as exc:
        print(f"vipmon: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    cli = {name: getattr(args, name) for name in Settings.model_fields}
    settings = load_settings(cli, args.config)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from app.server import serve

    return serve(settings)


def _status(url: str, timeout: float) -> int:
    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=timeout) as client:
            cluster = client.get(f"{base}/cluster").json()
            role = client.get(f"{base}/role").json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"vipmon: cannot read {base}: {exc}", file=sys.stderr)
        return 1
    print(format_status(cluster, role))
    return 0


def format_status(cluster: dict[str, Any], role: dict[str, Any]) -> str:
    """Render /cluster and /role answers as a table."""
    rows = [("MEMBER", "ROLE", "TERM", "URL")]
    for member in cluster.get("members", []):
        term = str(cluster.get("term", 0)) if member.get("is_master") else ""
        rows.append((member["id"], member["role"], term, member["url"]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    leader = cluster.get("leader") or "none"
    lines.append("")
    lines.append(
        f"leader: {leader}  term: {cluster.get('term', 0)}  "
        f"asked: {role.get('node')} ({role.get('role')})"
    )
    return "\n".join(lines)


def _openapi(output: Path) -> int:
    from app.http.spec import render_spec

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_spec(), encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
