"""Checkpoint helpers: RNG state, atomic folder replacement, completeness (``strategies.checkpoint_files``)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from skyrl_core.strategies.checkpoint_files import replace_dir, require_files, rng_state, set_rng_state


def test_rng_state_round_trip() -> None:
    state = rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_replace_dir_swaps_complete_folders(tmp_path) -> None:
    dest = tmp_path / "export"
    for version in ("old", "new"):
        tmp = tmp_path / f".export.tmp-{version}"
        tmp.mkdir()
        (tmp / "weights").write_text(version)
        replace_dir(tmp, dest)
        assert (dest / "weights").read_text() == version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_require_files_names_every_missing_piece(tmp_path) -> None:
    (tmp_path / "model.safetensors").write_text("")
    files = [("model.safetensors", "weights"), ("optimizer.pt", "optimizer state"), ("rng.pt", "RNG states")]
    with pytest.raises(FileNotFoundError, match=r"missing optimizer\.pt \(optimizer state\), rng\.pt \(RNG states\)\."):
        require_files(tmp_path, files)
    require_files(tmp_path, files[:1])
