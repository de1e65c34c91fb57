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
