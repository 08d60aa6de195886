"""The package's floors (docs/architecture.md): no import runs upward, no import circle.

Imports are read with ``ast`` from the source, so lazy imports inside
functions count too; only ``if TYPE_CHECKING:`` blocks are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vlrface

PACKAGE = Path(vlrface.__file__).resolve().parent

# Floor of each top-level module or sub-package; a module may import from its own floor or below.
FLOORS: dict[str, int] = {
    "__init__": 0,
    "errors": 0,
    "registry": 0,
    "preprocess": 0,
    "config": 0,
    "safeload": 0,
    "data": 1,
    "models": 2,
    "checkpoint": 3,
    "eval": 4,
    "quality": 4,
    "serve": 4,
    "train": 5,
    "demo": 6,
    "report_demo": 6,
    "ablate": 6,
    "bench": 6,
    "cli": 7,
    "__main__": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    return (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING") or (
        isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from x import y`` counts ``x.y`` when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in map(lambda f: nearest_known(f, known), found) if m and m != name}


def nearest_known(module: str, known: set[str]) -> str | None:
    """``module`` if it is one of the package's, else its nearest ancestor that is (None outside vlrface)."""
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(files)) for name, path in files.items()}


def floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    if top not in FLOORS:
        raise AssertionError(f"{module}: no floor assigned in tests/test_architecture.py FLOORS")
    return FLOORS[top]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} (floor {floor(m)}) imports {t} (floor {floor(t)})"
        for m, targets in graph.items()
        for t in targets
        if floor(t) > floor(m)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def test_no_module_imports_from_a_higher_floor():
    assert upward_imports(import_graph()) == []


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_checks_catch_an_upward_import_and_a_circle():
    graph = {"vlrface.data.x": {"vlrface.train.y"}, "vlrface.train.y": {"vlrface.data.x"}}
    assert upward_imports(graph) == ["vlrface.data.x (floor 1) imports vlrface.train.y (floor 5)"]
    assert cycles(graph) == [["vlrface.data.x", "vlrface.train.y"]]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ..train.config import X", {"vlrface.train"}),
        ("from .. import checkpoint", {"vlrface.checkpoint"}),
        ("import vlrface.serve.app", {"vlrface.serve.app"}),
        ("if TYPE_CHECKING:\n    from ..train import trainer\n", set()),
        ("def f():\n    from ..eval import run\n", {"vlrface.eval.run", "vlrface.eval"}),
    ],
)
def test_imports_are_read_with_relative_levels_and_lazy_imports(tmp_path, monkeypatch, source, expected):
    known = {
        "vlrface.train",
        "vlrface.checkpoint",
        "vlrface.serve.app",
        "vlrface.eval",
        "vlrface.eval.run",
        "vlrface.data",
    }
    path = PACKAGE / "data" / "_probe_.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert imported_modules(path, known) - {"vlrface.data"} == expected
