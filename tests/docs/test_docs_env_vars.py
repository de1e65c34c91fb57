"""docs/environment_variables.md lists every environment variable the code reads, and nothing else.

The code is every Python file and shell script of the repository (packages, plugins,
scripts, bench, tests), found by walking the checkout. Python reads are found in the syntax
tree: ``os.environ.get(NAME)``, ``os.getenv(NAME)``, ``os.environ[NAME]`` (not assigned),
``os.environ.setdefault(NAME, ...)`` (a value the user set wins, so it is read) and
``NAME in os.environ``. Shell reads are ``${NAME:-...}``-style expansions and ``$NAME`` of a
variable the script never assigns. Writes are ``os.environ[NAME] = ...`` in non-test code.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
from pathlib import Path

from docs_support import DOCS, REPO

PAGE = (DOCS / "environment_variables.md").read_text()
SKIP_DIRS = {"dist", "build", "runs", "site", "node_modules", "__pycache__"}
OS_VARIABLES = {"PATH", "HOME", "PWD", "OLDPWD", "BASH_SOURCE", "SECONDS", "IFS", "RANDOM", "LINENO", "UID", "USER"}


def source_files(suffix: str) -> list[Path]:
    """Files of the checkout with ``suffix``, leaving out hidden folders (venvs, .git) and build output."""
    out = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not (d.startswith(".") or d in SKIP_DIRS or d.endswith(".egg-info"))]
        out += [Path(root) / f for f in files if f.endswith(suffix)]
    return sorted(out)


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _const(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def python_env_use(tree: ast.AST) -> tuple[set[str], set[str]]:
    """``(read, written)`` variable names of one module."""
    read: set[str] = set()
    written: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            name = _const(node.args[0])
            func = node.func
            if name and func.attr in ("get", "setdefault") and _is_environ(func.value):
                read.add(name)
            elif name and func.attr == "getenv":
                read.add(name)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and (name := _const(node.slice)):
            (written if isinstance(node.ctx, ast.Store) else read).add(name)
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            if name := _const(node.left):
                read.add(name)
    return read, written


def shell_reads(text: str) -> set[str]:
    """Upper-case variables a shell script reads from its environment: those referenced before
    (or on the line of) their first assignment in the script, or never assigned at all."""
    first_ref: dict[str, int] = {}
    first_assign: dict[str, int] = {}
    for number, line in enumerate(text.splitlines()):
        code = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
        for name in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", code):
            first_ref.setdefault(name, number)
        assigned = re.findall(r"(?:^|[\s;(&|])(?:export\s+|local\s+|readonly\s+)?([A-Z_][A-Z0-9_]*)=", code)
        assigned += re.findall(r"\bfor\s+([A-Z_][A-Z0-9_]*)\s+in\b", code)
        for name in assigned:
            first_assign.setdefault(name, number)
    read = {name for name, line in first_ref.items() if line <= first_assign.get(name, line)}
    return read - OS_VARIABLES


def code_variables() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``({variable: files reading it}, {variable: files writing it})``."""
    read: dict[str, set[str]] = {}
    written: dict[str, set[str]] = {}
    for path in source_files(".py"):
        rel = str(path.relative_to(REPO))
        r, w = python_env_use(ast.parse(path.read_text(encoding="utf-8"), filename=rel))
        for name in r - OS_VARIABLES:
            read.setdefault(name, set()).add(rel)
        if "tests" not in path.relative_to(REPO).parts:
            for name in w:
                written.setdefault(name, set()).add(rel)
    for path in source_files(".sh"):
        rel = str(path.relative_to(REPO))
        for name in shell_reads(path.read_text(encoding="utf-8")):
            read.setdefault(name, set()).add(rel)
    return read, written


def documented(section: str) -> set[str]:
    """Variables in the first column of the tables under headings starting with ``section``."""
    out: set[str] = set()
    for chunk in re.split(r"^## ", PAGE, flags=re.MULTILINE)[1:]:
        if chunk.startswith(section):
            for names, _ in rows(chunk):
                out |= set(names)
    return out


def rows(chunk: str) -> list[tuple[list[str], str]]:
    """``(variables of the first cell, second cell)`` of every table row naming variables."""
    out = []
    for first, second in re.findall(r"^\| ([^|]*) \| ([^|]+) \|", chunk, flags=re.MULTILINE):
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", first)
        if names:
            out.append((names, second))
    return out


def test_the_scanner_finds_known_uses():
    read, written = code_variables()
    assert {"SKYRL_LOAD_PLUGINS", "HF_HUB_OFFLINE", "SKYRL_VENV", "SKYRL_PLUGIN_STAGES"} <= set(read)
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" in written
    assert "PATH" not in read and "BASH_SOURCE" not in read


def test_every_variable_read_is_documented_and_nothing_else():
    read, _ = code_variables()
    listed = documented("Read by")
    missing = {name: sorted(files) for name, files in read.items() if name not in listed}
    assert not missing, f"read by the code but not in docs/environment_variables.md: {missing}"
    extra = listed - set(read)
    assert not extra, f"docs/environment_variables.md lists variables no code reads: {sorted(extra)}"


def test_every_variable_set_is_documented_and_nothing_else():
    _, written = code_variables()
    assert documented("Set by") == set(written), written


def test_the_page_names_the_files_that_read_each_variable():
    read, _ = code_variables()
    for chunk in re.split(r"^## ", PAGE, flags=re.MULTILINE)[1:]:
        for name, where in [(n, w) for names, w in rows(chunk) for n in names]:
            if name not in read:
                continue
            named = re.findall(r"`([^`]+)`", where)
            found = any(fnmatch.fnmatch(f, n) or fnmatch.fnmatch(f, f"*/{n}") for n in named for f in read[name])
            assert found, f"{name}: the page names {named}, the code reading it is {sorted(read[name])}"
