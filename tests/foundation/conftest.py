"""Fixtures of the foundation tests: test plugin distributions and a `skyrl` subprocess runner.

The test plugins live in ``tests/fixtures/dists/<site>/`` as a module plus a
``.dist-info`` folder (see tests/fixtures/README.md); putting a site on ``sys.path`` or
``PYTHONPATH`` makes ``importlib.metadata`` see an installed distribution, so loading goes
through the real ``skyrl`` entry-point group.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import attrs
import pytest
from foundation_support import BASE_TOML, site


def _forget_test_modules() -> None:
    for mod in [m for m in sys.modules if m.startswith("skyrl_test_")]:
        del sys.modules[mod]


@pytest.fixture
def use_dists(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``use_dists("everything", "broken")``: make those test distributions visible in-process."""
    monkeypatch.delenv("SKYRL_LOAD_PLUGINS", raising=False)

    def add(*names: str) -> None:
        for name in names:
            monkeypatch.syspath_prepend(str(site(name)))
        importlib.invalidate_caches()

    _forget_test_modules()
    yield add
    _forget_test_modules()


@pytest.fixture
def everything(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The plugin module of ``skyrl-test-everything``, imported from its site folder."""
    monkeypatch.syspath_prepend(str(site("everything")))
    _forget_test_modules()
    yield importlib.import_module("skyrl_test_everything.plugin")
    _forget_test_modules()


@attrs.frozen
class CliResult:
    """What one ``skyrl`` subprocess did."""

    code: int
    out: str
    err: str

    def failed_cleanly(self) -> str:
        """Assert exit code 2 and no traceback; return stderr."""
        assert self.code == 2, f"expected exit code 2, got {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        assert "Traceback" not in self.err + self.out, f"raw traceback shown:\n{self.err}"
        return self.err

    def single_error(self) -> str:
        """Assert the run failed cleanly with one ``error: ...`` message; return stderr."""
        err = self.failed_cleanly()
        starts = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(starts) == 1 and err.startswith("error: "), f"expected one error message, got:\n{err}"
        return err


def skyrl_command() -> list[str]:
    """The installed ``skyrl`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "skyrl"
    assert script.exists(), f"the `skyrl` console script is missing next to {sys.executable}; reinstall skyrl-core"
    return [str(script)]


@pytest.fixture
def skyrl(tmp_path: Path) -> Callable[..., CliResult]:
    """Run ``skyrl ARGS`` in ``tmp_path`` with some test distributions on ``PYTHONPATH``.

    ``skyrl("plugins", "--json", dists=["broken"], env={"SKYRL_LOAD_PLUGINS": "x"})``
    """

    def run(
        *args: str, dists: tuple[str, ...] | list[str] = ("everything",), env: dict[str, str] | None = None
    ) -> CliResult:
        full_env = {k: v for k, v in os.environ.items() if k not in ("SKYRL_LOAD_PLUGINS", "PYTHONPATH")}
        full_env["PYTHONPATH"] = os.pathsep.join(str(site(d)) for d in dists)
        full_env.update(env or {})
        proc = subprocess.run(
            [*skyrl_command(), *args], cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=120
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[..., Path]:
    """``write_toml(extra, base=True, name="run.toml")``: a config file in ``tmp_path``."""

    def write(extra: str = "", *, base: bool = True, name: str = "run.toml") -> Path:
        path = tmp_path / name
        path.write_text((BASE_TOML + "\n" if base else "") + extra)
        return path

    return write
