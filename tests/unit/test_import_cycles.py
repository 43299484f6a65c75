"""No two modules of ``app`` import each other, directly or through others.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import``
anywhere in a module, inside functions too (an import moved into a function still
closes a circle, it only runs later), except those under ``if TYPE_CHECKING:``, which
never run. ``from app.x import y`` counts as an edge to ``app.x`` and, when ``y`` is a
module, to ``app.x.y``; relative imports are resolved. A module is not taken to import
the packages around it (importing ``app.a.b`` runs ``app/a/__init__.py``, but that is
an edge only if the package itself imports back).
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def modules(root: Path = APP) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name; a package by its own name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:`` (not its ``else``)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def _imported(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(root: Path = APP) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports at run time."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skipped = _type_checking_only(tree)
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
                for target in _imported(name, path, node):
                    # "import app.a.b" needs app.a.b; a name from a module is no module.
                    while target and target not in known:
                        target = target.rpartition(".")[0] if "." in target else ""
                    if target and target != name:
                        edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that reach one another (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    pkg = tmp_path / "app"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from app.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from ..a import f\nfrom . import c\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import app.a\nimport app.sub\n"
    )
    graph = import_graph(pkg)
    assert graph["app.a"] == {"app.sub", "app.sub.b"}
    assert graph["app.sub.b"] == {"app.a", "app.sub", "app.sub.c"}
    assert graph["app.sub.c"] == {"app.sub"}
    assert cycles(graph) == [["app.a", "app.sub.b"]]


def test_no_module_of_app_imports_itself_back() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles among app modules:\n" + "\n".join(
        " <-> ".join(group) for group in found
    )
