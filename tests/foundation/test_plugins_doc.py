"""docs/plugins.md: every hook spec with its exact signature, and the example plugin really works."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from foundation_support import REPO

from skyrl_core import hookspecs
from skyrl_core.config.loader import parse_config
from skyrl_core.plugins import build_registry
from skyrl_core.specs import Kind
from skyrl_core.testing import check_plugin

DOC = REPO / "docs" / "plugins.md"
SPECS = sorted(n for n in dir(hookspecs) if n.startswith("skyrl_") and callable(getattr(hookspecs, n)))


def blocks(text: str, lang: str) -> list[str]:
    """The bodies of the fenced code blocks of one language."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def normalise(annotation: str) -> str:
    return ast.unparse(ast.parse(annotation, mode="eval"))


def spec_signature(name: str) -> tuple[list[tuple[str, str]], str]:
    sig = inspect.signature(getattr(hookspecs, name))
    params = [(p.name, normalise(str(p.annotation))) for p in sig.parameters.values()]
    return params, normalise(str(sig.return_annotation))


def doc_signatures() -> dict[str, tuple[list[tuple[str, str]], str]]:
    reference = DOC.read_text().split("## Hook reference", 1)[1]
    out = {}
    for body in blocks(reference, "python"):
        fn = ast.parse(body.strip() + ": ...").body[0]
        assert isinstance(fn, ast.FunctionDef), body
        assert fn.name not in out, f"{fn.name} is documented twice"
        params = [(a.arg, ast.unparse(a.annotation)) for a in fn.args.args]
        out[fn.name] = (params, ast.unparse(fn.returns))
    return out


def test_every_hook_spec_is_documented_with_its_exact_signature():
    documented = doc_signatures()
    assert sorted(documented) == SPECS, "docs/plugins.md's Hook reference must list every hook spec, and only those"
    for name in SPECS:
        assert documented[name] == spec_signature(name), (
            f"{name}: docs/plugins.md disagrees with skyrl_core/hookspecs.py"
        )


def test_firstresult_hooks_are_called_so():
    reference = DOC.read_text().split("## Hook reference", 1)[1]
    for name in SPECS:
        after = reference.split(f"def {name}(", 1)[1].split("```python", 1)[0]
        says_first = "First-result hook" in after
        assert says_first == bool(getattr(hookspecs, name).skyrl_spec.get("firstresult")), name


def test_every_python_snippet_parses():
    for body in blocks(DOC.read_text(), "python"):
        signature_only = body.count("\n") == 1 and body.startswith("def ")
        ast.parse(body.strip() + ": ..." if signature_only else body)


@pytest.fixture
def echo_site(tmp_path, monkeypatch):
    """The doc's example distribution, laid out as pip would install it (package + dist-info)."""
    text = DOC.read_text()
    for body in blocks(text, "python"):
        first = body.splitlines()[0]
        if first.startswith("# skyrl_env_echo/"):
            path = tmp_path / "site" / first[2:]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
    (tmp_path / "site" / "skyrl_env_echo" / "__init__.py").write_text("")
    (pyproject,) = [b for b in blocks(text, "toml") if b.startswith("# pyproject.toml")]
    project = tomllib.loads(pyproject)["project"]
    info = tmp_path / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    eps = project["entry-points"]["skyrl"]
    (info / "entry_points.txt").write_text("[skyrl]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("SKYRL_LOAD_PLUGINS", raising=False)
    importlib.invalidate_caches()
    yield tmp_path / "site"
    for mod in [m for m in sys.modules if m.startswith("skyrl_env_echo")]:
        del sys.modules[mod]


def test_the_example_plugin_loads_through_its_entry_point(echo_site):
    registry = build_registry()
    (info,) = [p for p in registry.plugins if p.distribution == "skyrl-env-echo"]
    assert (info.status, info.version, info.components) == ("ok", "0.1.0", {"environment": ["echo"]})
    plugin = importlib.import_module("skyrl_env_echo.plugin")
    assert check_plugin(plugin) == []
    comp = registry.get(Kind.ENVIRONMENT, "echo")
    env = comp.load()(comp.spec.config_cls(target="42"), {})
    assert env.step("it is 42").reward == 1.0
    assert env.step("it is 41").reward == 0.0


def test_the_example_run_config_validates(echo_site):
    registry = build_registry()
    (run_toml,) = [b for b in blocks(DOC.read_text(), "toml") if b.startswith("# run.toml")]
    cfg = parse_config(tomllib.loads(run_toml), registry=registry)
    assert cfg.environments["echo"].target == "42"
    bad = tomllib.loads(run_toml)
    bad["environments"]["echo"] = {"max_chars": 0, "targte": "x"}
    with pytest.raises(Exception) as exc:
        parse_config(bad, registry=registry)
    assert "environments.echo.targte: unknown key. Did you mean 'target'?" in str(exc.value)
    assert "environments.echo.max_chars: must be > 0, got 0" in str(exc.value)


def test_the_testing_example_passes(echo_site):
    (body,) = [b for b in blocks(DOC.read_text(), "python") if "def test_plugin_is_valid" in b]
    namespace: dict = {}
    exec(compile(body, "docs/plugins.md", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
    assert len(tests) == 2
    for fn in tests:
        fn()


def test_the_shell_commands_run(echo_site):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env["PYTHONPATH"] = str(echo_site)
    for body in blocks(DOC.read_text(), "bash"):
        for line in body.splitlines():
            command = line.split("  #")[0].strip()
            if not command:
                continue
            proc = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr


def test_the_conformance_example_matches_the_suite():
    from skyrl_core.testing import conformance

    (body,) = [b for b in blocks(DOC.read_text(), "python") if "BackendConformance)" in b]
    tree = ast.parse(body)
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    members = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    members |= {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    for name in members:
        assert hasattr(conformance.BackendConformance, name), f"docs/plugins.md overrides unknown member {name!r}"
    make = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "make_backend")
    documented = [a.arg for a in make.args.args]
    assert documented == list(inspect.signature(conformance.BackendConformance.make_backend).parameters)
