"""Fixtures of the skyrl-tracker-wandb tests: W&B kept inside the test's temporary folder, offline."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def wandb_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B's settings, cache and artifact staging under ``tmp_path``; no credentials, no WANDB_MODE.

    Nothing here reaches a network: the tests log in offline mode, and the one online attempt
    fails on the missing API key before W&B contacts a server.
    """
    home = tmp_path / "wandb-home"
    for var, sub in [
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ]:
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("NETRC", str(home / "no-netrc"))
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")  # no error reports to W&B's servers
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    return home
