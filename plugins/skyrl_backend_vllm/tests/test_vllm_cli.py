"""``skyrl doctor``'s readiness line and ``skyrl vllm-check``, through the real ``skyrl`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from skyrl_backend_vllm.checks import readiness
from vllm_support import HAVE_VLLM, needs_vllm


def skyrl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "skyrl"
    env = dict(os.environ, SKYRL_LOAD_PLUGINS="skyrl-backend-vllm")
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_doctor_says_whether_an_engine_can_start():
    ok, line = readiness()
    out = skyrl("doctor").stdout
    backend_line = next(i for i, text in enumerate(out.splitlines()) if text.strip().startswith("vllm "))
    assert out.splitlines()[backend_line + 1].strip() == f"{'ready' if ok else 'not ready'}: {line}"


def test_vllm_check_without_start_reads_packages_only():
    proc = skyrl("vllm-check")
    assert proc.stdout.strip() == readiness()[1]
    assert proc.returncode == (0 if HAVE_VLLM else 1)


@needs_vllm
@pytest.mark.slow
def test_vllm_check_starts_an_engine():
    proc = skyrl("vllm-check", "--start")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "engine started in" in proc.stdout and "on cpu" in proc.stdout and "generated 8 tokens" in proc.stdout
