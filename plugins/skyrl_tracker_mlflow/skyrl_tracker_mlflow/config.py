"""``[tracking.mlflow]``: the options of the MLflow tracker (torch- and mlflow-free: imported at start-up)."""

from __future__ import annotations

import attrs

from skyrl_core.api import option


@attrs.define(kw_only=True)
class MlflowConfig:
    """``[tracking.mlflow]``: which MLflow store, experiment and run name."""

    tracking_uri: str | None = option(
        None,
        help="Where runs are stored: a folder (an MLflow file store; relative to the current directory), "
        "'file:///abs/path', 'sqlite:///mlflow.db' (needs SQLAlchemy and Alembic) or a tracking server "
        "'http(s)://host:port'. None: the MLFLOW_TRACKING_URI environment variable, else the folder ./mlruns. "
        "The resolved URI is recorded in the run directory, so a resumed run finds its store from anywhere.",
    )
    experiment: str = option("skyrl", help="MLflow experiment of the run (created when missing).")
    run_name: str | None = option(None, help="MLflow run name; None: `[run] name`.")
    tags: dict[str, str] = option(factory=dict, help="Extra run tags, e.g. `tags = { team = \"rl\" }`.")
