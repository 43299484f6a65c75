"""What the commands of ``vipmon`` share: the parser class, exit statuses, client flags.

* :class:`OneLineParser` turns every argparse error into one line and exit status 2.
* :data:`EXIT_OK`, :data:`EXIT_FAILURE` and :data:`EXIT_USAGE` are the statuses every
  command keeps to (``vipmon status`` adds its own, see :mod:`app.verdict`). A command
  may raise :class:`app.errors.SettingsError`: :func:`app.cli.main` prints it as one line
  and exits with :data:`EXIT_USAGE`.
* :func:`add_client_tls` and :func:`client_verify` are the TLS options of the commands
  that talk to a node, and what httpx's ``verify`` takes from them.
* :func:`node_url` checks a node's API URL given on the command line.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeAlias

from app.errors import SettingsError
from app.http.tls import client_context
from app.settings import base_url
from app.status import DEFAULT_URL

EXIT_OK = 0
EXIT_FAILURE = 1
"""The command ran and failed: a node cannot be reached, or refused."""
EXIT_USAGE = 2
"""A bad flag or setting, named in one line on stderr."""

#: The node a command asks when no ``--url`` is given (the one default, in app.status).
DEFAULT_NODE_URL = DEFAULT_URL

Subparsers: TypeAlias = "argparse._SubParsersAction[OneLineParser]"
"""What ``add_subparsers`` returns: each command module adds its parsers to it."""

Command: TypeAlias = Callable[[argparse.Namespace], int]
"""A command: the parsed arguments in, the exit status out. Each parser sets it as ``func``."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``vipmon run: error: ...``, status 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def add_client_tls(parser: argparse.ArgumentParser) -> None:
    """``--ca-file``, ``--cert-file`` and ``--key-file``, for :func:`client_verify`."""
    parser.add_argument("--ca-file", type=Path, help="CA that signed the node's certificate")
    parser.add_argument("--cert-file", type=Path, help="client certificate, for nodes that ask")
    parser.add_argument("--key-file", type=Path, help="its private key")


def client_verify(args: argparse.Namespace) -> ssl.SSLContext | bool:
    """httpx's ``verify``: an SSL context from the flags of :func:`add_client_tls`, or True.

    Raises SettingsError naming the flag whose file is missing or unusable.
    """
    return client_context(args.ca_file, args.cert_file, args.key_file)


def node_url(url: str) -> str:
    """A node's API URL as ``scheme://host:port``; SettingsError (``url``) if it has a path."""
    try:
        return base_url(url)
    except ValueError as exc:
        raise SettingsError("url", str(exc)) from None
