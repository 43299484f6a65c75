"""``vipmon openapi``: write the API's OpenAPI spec (the committed ``openapi/openapi.json``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.common import EXIT_OK, Subparsers


def add_parser(sub: Subparsers) -> None:
    """Add ``openapi`` to ``sub``."""
    spec = sub.add_parser("openapi", help="write the OpenAPI spec")
    spec.add_argument("--output", type=Path, default=Path("openapi/openapi.json"))
    spec.set_defaults(func=write_spec)


def write_spec(args: argparse.Namespace) -> int:
    """Write the spec to ``--output``, making its directory; an OSError propagates."""
    # Imported here, not at the top: the spec is made by building the FastAPI app
    # (about 0.1 s), which no other client command needs. app.http never imports app.cli.
    from app.http.spec import render_spec

    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_spec(), encoding="utf-8")
    print(f"wrote {output}")
    return EXIT_OK
