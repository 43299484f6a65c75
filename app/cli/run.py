"""``vipmon run``: one node. Every setting is a flag, named as in the config file.

Each field of :class:`app.settings.Settings` becomes ``--field-name``; its help gives the
description, the choices, the default and the ``VIPMON_`` variable. The flags given
override the file (``--config``), which overrides the environment. A bad value raises
SettingsError before anything starts (exit status 2, one line); otherwise the status
is the server's (:func:`app.server.serve`).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from app.cli.common import Subparsers
from app.logs import configure_logging
from app.settings import Settings, load_settings, unknown_variables


def add_parser(sub: Subparsers) -> None:
    """Add ``run`` to ``sub``."""
    run = sub.add_parser("run", help="run one node: join the election, serve the API")
    run.add_argument("--config", type=Path, help="TOML or YAML file of settings")
    for name, field in Settings.model_fields.items():
        choices = (
            list(get_args(field.annotation)) if get_origin(field.annotation) is Literal else None
        )
        # The choices are named in the help; Settings checks the value, as for a file.
        help_text = _setting_help(name, field.description, field.default, choices)
        if field.annotation is bool:
            run.add_argument(
                _flag(name), dest=name, action="store_const", const="true", help=help_text
            )
        elif name in ("allow_cidr", "trusted_proxy", "fence_port"):
            run.add_argument(_flag(name), dest=name, action="append", help=help_text)
        else:
            run.add_argument(_flag(name), dest=name, default=None, help=help_text)
    run.set_defaults(func=run_node)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


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


def run_node(args: argparse.Namespace) -> int:
    """Load the settings (flags over file over environment), log what was set aside, serve."""
    cli = {name: getattr(args, name) for name in Settings.model_fields}
    settings = load_settings(cli, args.config)
    configure_logging(settings.log_level, settings.log_format, settings.node_id)
    log = logging.getLogger("vipmon")
    for line in settings.set_aside:
        log.info("%s", line)
    for line in unknown_variables(os.environ):
        log.warning("%s", line)
    # Imported here, not at the top: the server brings FastAPI, uvicorn and the election
    # (about 0.2 s), which no other command needs. app.server never imports app.cli.
    from app.server import serve

    return serve(settings)
