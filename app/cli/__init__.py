"""vipmon: tells a load balancer which node of a cluster holds the master role.

The command line, one module per command or group of commands, each adding its
parsers with ``add_parser`` (or ``add_parsers``) and setting ``func``, the
:data:`app.cli.common.Command` that runs it:

* :mod:`app.cli.run`: ``run``, one node;
* :mod:`app.cli.status`: ``status``, every node's role and the cluster's verdict;
* :mod:`app.cli.admin`: ``switchover``, ``maintenance``, ``pause``, ``resume`` and
  ``member forget``, sent to a node's admin API;
* :mod:`app.cli.openapi`: ``openapi``, the API's spec;
* :mod:`app.cli.history`: ``history``, the cluster's last terms;
* :mod:`app.cli.adc`: ``adc-config``, a load balancer's config;
* :mod:`app.cli.bootstrap`: ``bootstrap``, the files that make bare hosts a cluster;
* :mod:`app.cli.fence`: ``fence status`` and ``fence remove``, this host's kernel fence;
* :mod:`app.cli.demo`: ``demo``, a cluster and an HAProxy on this host.

What they share is :mod:`app.cli.common`. :func:`main` is the ``vipmon`` entry point:
setting errors end the process with status 2 and one line naming the field and the
reason, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app import __version__
from app.cli import adc, admin, bootstrap, demo, fence, history, openapi, run, status
from app.cli.common import EXIT_USAGE, Command, OneLineParser
from app.errors import SettingsError


def build_parser() -> argparse.ArgumentParser:
    """``vipmon`` and its commands, in the order ``vipmon --help`` lists them."""
    parser = OneLineParser(prog="vipmon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vipmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parser(sub)
    status.add_parser(sub)
    admin.add_parsers(sub)
    openapi.add_parser(sub)
    history.add_parser(sub)
    adc.add_parser(sub)
    bootstrap.add_parser(sub)
    fence.add_parser(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vipmon argv`` (default: ``sys.argv[1:]``) and return its exit status.

    argparse's own errors, ``--help`` and ``--version`` raise SystemExit (status 2, 0).
    """
    args = build_parser().parse_args(argv)
    command: Command = args.func
    try:
        return command(args)
    except SettingsError as exc:
        print(f"vipmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
