"""The public surface (``skyrl_core.api``): plugins use nothing else, every name resolves, the
reference in docs/plugins.md is current, and a hook module never imports torch."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from skyrl_core import api
from skyrl_core.api_reference import END, START, reference_markdown

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIRS = sorted([*ROOT.glob("skyrl_*/pyproject.toml"), *ROOT.glob("plugins/*/pyproject.toml")])


def _skyrl_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``skyrl_core`` import in a file (top level and inside functions)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "skyrl_core" or node.module.startswith("skyrl_core."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "skyrl_core"]
    return out


def _allowed(module: str, *, test_file: bool) -> bool:
    if module in ("skyrl_core", "skyrl_core.api"):
        return True
    return test_file and (module == "skyrl_core.testing" or module.startswith("skyrl_core.testing."))


@pytest.mark.parametrize("project", [p.parent for p in PLUGIN_DIRS], ids=lambda p: p.name)
def test_plugins_import_only_the_public_api(project: Path) -> None:
    bad = []
    for path in sorted(project.rglob("*.py")):
        if "build" in path.relative_to(project).parts:
            continue
        test_file = "tests" in path.relative_to(project).parts
        for line, module in _skyrl_imports(path):
            if not _allowed(module, test_file=test_file):
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not bad, "plugins may import skyrl_core.api (and, in tests, skyrl_core.testing) only:\n" + "\n".join(bad)


def test_the_rule_catches_an_internal_import(tmp_path: Path) -> None:
    sample = tmp_path / "plugin.py"
    sample.write_text("from skyrl_core.api import hookimpl\n\ndef f():\n    from skyrl_core.trainer import train\n")
    assert [m for _, m in _skyrl_imports(sample) if not _allowed(m, test_file=False)] == ["skyrl_core.trainer"]


def test_every_public_name_resolves_to_a_documented_object() -> None:
    assert api.__all__ == sorted(api.EXPORTS)
    assert sum(len(names) for names in api.GROUPS.values()) == len(api.EXPORTS)
    for name in api.__all__:
        obj = getattr(api, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
    import skyrl_core

    assert skyrl_core.ComponentSpec is api.ComponentSpec and skyrl_core.hookimpl is api.hookimpl
    with pytest.raises(AttributeError):
        _ = api.not_a_public_name


def test_the_reference_in_plugins_md_is_current() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    assert START in text and END in text
    current = START + text.split(START, 1)[1].split(END, 1)[0] + END + "\n"
    assert current == reference_markdown(), (
        "docs/plugins.md's API reference is stale: run `python -m skyrl_core.api_reference --write docs/plugins.md`"
    )


def test_hook_and_config_modules_import_without_torch() -> None:
    modules = ["skyrl_core.api"]
    for project in [p.parent for p in PLUGIN_DIRS]:
        package = next(p for p in project.iterdir() if p.is_dir() and (p / "plugin.py").is_file())
        modules.append(f"{package.name}.plugin")
        if (package / "config.py").is_file():
            modules.append(f"{package.name}.config")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "from skyrl_core.api import ComponentSpec, StepOutput, TextEnv, hookimpl, option, positive, SkyrlError\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing hook/config modules imported torch: {out}"
