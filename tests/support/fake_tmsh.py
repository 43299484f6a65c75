"""A stand-in for F5's ``tmsh -c '<command>'``, for running ``vipmon adc-config f5`` scripts.

There is no BIG-IP here, and tmsh exists nowhere else: this test double of that external
tool keeps the LTM objects the scripts touch in one JSON file (``$FAKE_TMSH_STATE``) and
refuses what tmsh refuses, with a non-zero exit and a message on stderr:

* ``create`` of an object that exists, and ``modify``/``list`` of one that does not;
* ``modify`` of a node's ``address`` (tmsh cannot change it);
* ``add`` of a collection item (pool member, profile) that is already there.

``save sys config`` copies the objects to ``saved``. Every command is appended to
``log`` in the state, so a test can see what a run did. Only the grammar the generated
scripts use is understood: ``VERB TYPE... /PARTITION/NAME [PROPERTY VALUE]...``, where a
value is a word, a quoted string or a ``{ ... }`` block, and a collection property is
``NAME add|replace-all-with|delete { ITEM [{ ... }]... }``.

Run as ``python fake_tmsh.py -c '<command>'`` (through a ``tmsh`` wrapper on ``PATH``).
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

COLLECTION_OPS = ("add", "replace-all-with", "delete")


class Refused(Exception):
    """What tmsh would print before exiting 1."""


def _block(tokens: list[str], i: int) -> tuple[list[str], int]:
    """The tokens inside the ``{ ... }`` starting at ``tokens[i]``, and the index after it."""
    if tokens[i] != "{":
        raise Refused(f"Syntax Error: expected {{ at {tokens[i]!r}")
    depth, inner = 0, []
    for j in range(i, len(tokens)):
        depth += {"{": 1, "}": -1}.get(tokens[j], 0)
        if depth == 0:
            return inner[1:], j + 1
        inner.append(tokens[j])
    raise Refused("Syntax Error: missing }")


def _items(tokens: list[str]) -> dict[str, str]:
    """Collection items, each with the text of its own ``{ ... }`` block (or "")."""
    items, i = {}, 0
    while i < len(tokens):
        name, i = tokens[i], i + 1
        body: list[str] = []
        if i < len(tokens) and tokens[i] == "{":
            body, i = _block(tokens, i)
        items[name] = " ".join(body)
    return items


def parse(command: str) -> tuple[str, str, str, dict[str, Any]]:
    """(verb, type, name, properties); a collection property is (op, items)."""
    tokens = shlex.split(command)
    verb = tokens[0]
    at = next(i for i, t in enumerate(tokens) if t.startswith("/"))
    kind, name, rest = " ".join(tokens[1:at]), tokens[at], tokens[at + 1 :]
    props: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        key, i = rest[i], i + 1
        if i < len(rest) and rest[i] in COLLECTION_OPS:
            op = rest[i]
            inner, i = _block(rest, i + 1)
            props[key] = (op, _items(inner))
        elif i < len(rest) and rest[i] == "{":
            inner, i = _block(rest, i)
            props[key] = " ".join(inner)
        else:
            props[key], i = rest[i], i + 1
    return verb, kind, name, props


def apply(state: dict[str, Any], command: str) -> str:
    """Carry out one command on ``state``; return what tmsh would print.

    A refused command may leave ``state`` half changed: :func:`main` applies each
    command to a copy and keeps it only on success, as tmsh does.
    """
    if command.strip() == "save sys config":
        state["saved"] = copy.deepcopy(state["objects"])
        return "Saving running configuration...\n"
    verb, kind, name, props = parse(command)
    key, objects = f"{kind} {name}", state["objects"]
    exists = key in objects
    if verb == "list":
        if not exists:
            raise Refused(f"01020036:3: The requested {kind} ({name}) was not found.")
        return f"{key} {json.dumps(objects[key], sort_keys=True)}\n"
    if verb == "create" and exists:
        raise Refused(f"01020066:3: The requested {kind} ({name}) already exists.")
    if verb == "modify" and not exists:
        raise Refused(f"01020036:3: The requested {kind} ({name}) was not found.")
    if verb not in ("create", "modify"):
        raise Refused(f"Syntax Error: unexpected verb {verb!r}")
    if verb == "modify" and kind == "ltm node" and "address" in props:
        raise Refused(f"01070734:3: The requested node address ({name}) cannot be modified.")
    target = objects.setdefault(key, {})
    for prop, value in props.items():
        if isinstance(value, tuple):
            op, items = value
            current = target.setdefault(prop, {})
            if op == "add":
                for item in items:
                    if item in current:
                        raise Refused(f"01020066:3: The requested {prop} ({item}) already exists.")
                current.update(items)
            elif op == "replace-all-with":
                target[prop] = dict(items)
            else:
                for item in items:
                    current.pop(item, None)
        else:
            target[prop] = value
    return ""


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "-c":
        print("fake tmsh: only -c '<command>' is supported", file=sys.stderr)
        return 2
    path = Path(os.environ["FAKE_TMSH_STATE"])
    state = json.loads(path.read_text()) if path.exists() else {"objects": {}, "log": []}
    state["log"].append(argv[1])
    attempt = copy.deepcopy(state)
    try:
        out = apply(attempt, argv[1])
    except Refused as exc:
        print(exc, file=sys.stderr)
        status = 1
    else:
        sys.stdout.write(out)
        state, status = attempt, 0
    path.write_text(json.dumps(state, indent=1, sort_keys=True))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
