"""Fixtures of the skyrl-tracker-mlflow tests: MLflow's file store inside the test's temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def mlflow_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory is ``tmp_path/work`` (so the default store ``./mlruns`` lands there), no
    MLFLOW_TRACKING_URI, no telemetry; MLFLOW_ALLOW_FILE_STORE, which the tracker sets, is unset again
    after the test."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # records "unset" as the value to restore
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    return work
