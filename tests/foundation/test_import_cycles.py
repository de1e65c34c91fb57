"""No import cycles among ``skyrl_core`` modules.

An edge ``a -> b`` is an import statement in module ``a`` naming module ``b`` (the deepest
module it names: ``from skyrl_core.pipeline import collect`` is an edge to
``skyrl_core.pipeline.collect``, ``from skyrl_core.pipeline import LoopThread`` one to the
package ``skyrl_core.pipeline``). Imports at the top of a module and inside functions both
count; those under ``if TYPE_CHECKING:`` do not (they never run). A lower layer that imports
a higher one lazily, inside a function, to get around a cycle is a cycle here too: move the
shared piece down instead.

Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; those implicit edges are
not counted, so package ``__init__`` files stay light (``skyrl_core``, ``skyrl_core.protocols``:
lazy re-exports).
"""

from __future__ import annotations

import ast
from pathlib import Path

import skyrl_core

PACKAGE = Path(skyrl_core.__file__).parent


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module and package of ``root``."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``skyrl_core`` modules that ``name`` imports (see the module docstring)."""
    package = name.split(".")[0]
    is_package = path.name == "__init__.py"

    def resolve(dotted: str) -> str:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(child: ast.AST) -> None:
        if isinstance(child, ast.Import):
            found.update(resolve(a.name) for a in child.names if a.name.split(".")[0] == package)
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - (child.level - 1)]
                base = ".".join([*here, *([base] if base else [])])
            if base.split(".")[0] == package:
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else resolve(base))
        visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    found.discard("")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from demo.high import g\n    return g\n")
    (pkg / "high.py").write_text("from demo import low\n\ndef g():\n    return low\n")
    (pkg / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from demo.high import g\n")
    modules = module_files(pkg)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph["demo.typed"] == set()
    assert cycles(graph) == [["demo.high", "demo.low"]]


def test_no_import_cycles_in_skyrl_core() -> None:
    modules = module_files()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    found = cycles(graph)
    assert not found, "import cycles among skyrl_core modules:\n" + "\n".join(" <-> ".join(c) for c in found)
