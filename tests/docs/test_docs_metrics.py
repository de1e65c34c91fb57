"""docs/metrics.md names every key a training run writes to metrics.jsonl.

Short real runs (tiny model, arithmetic task) with the options that switch most metric
families on (a critic through ``gae``, the KL term in the loss, evaluation every step,
verified weight sync; then the same in ``one_step_off`` mode) write metrics.jsonl; every
key in it must match a documented row (``<env>``, ``<source>``, ``<reason>``, ``<metric>``,
``<k>`` match one path segment).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docs_support import DOCS

from skyrl_core.cli import main
from skyrl_core.testing.runs import read_metrics, write_tiny_config

PAGE = DOCS / "metrics.md"
PLACEHOLDER = re.compile(r"<[a-z]+>")

#: On top of the tiny test run: a critic (gae), the KL term in the loss, eval every step, verified sync.
OPTIONS = [
    "algorithm.advantage.name=gae",
    "algorithm.kl.mode=loss",
    "runtime.verify_weights=true",
    "eval.every=1",
    "checkpoint.every=0",
    "tracking.plot=false",
]


def documented() -> list[tuple[str, re.Pattern[str]]]:
    """``(key as written, pattern)`` for the first cell of every table row of the page."""
    rows = []
    for line in PAGE.read_text().splitlines():
        m = re.match(r"^\| `([^`]+)` \|", line)
        if m:
            key = m.group(1)
            parts = PLACEHOLDER.split(key)
            rows.append((key, re.compile("[^/]+".join(re.escape(p) for p in parts) + "$")))
    return rows


def test_the_page_documents_the_main_families() -> None:
    keys = {k for k, _ in documented()}
    for key in ("reward/mean", "policy/loss", "policy/entropy", "eval/<source>/score", "timing/step",
                "critic/loss", "weight_sync/bytes", "startup/logprob_diff_max"):
        assert key in keys, key


def run_keys(root: Path, extra: list[str]) -> set[str]:
    cfg = write_tiny_config(root, steps=2)
    assert main(["train", str(cfg), *OPTIONS, *extra]) == 0
    return set().union(*read_metrics(root / "run").values()) - {"step"}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> set[str]:
    """Keys of a synchronous run with a critic and a KL term, and of a one_step_off run."""
    sync = run_keys(tmp_path_factory.mktemp("metrics-sync"), [])
    off = run_keys(tmp_path_factory.mktemp("metrics-off"), ["trainer.mode=one_step_off", "trainer.steps=3"])
    assert "weight_sync/bytes" in off and "rollout/staleness/max" in off  # the pipeline reports its syncs too
    return sync | off


def test_every_written_key_is_documented(written) -> None:
    patterns = [p for _, p in documented()]
    missing = sorted(k for k in written if not any(p.match(k) for p in patterns))
    assert not missing, f"document these metrics in docs/metrics.md: {missing}"


def test_the_console_columns_are_documented_metrics(written) -> None:
    """The console table reads keys that runs write (its `len` column once read a key nobody wrote)."""
    from skyrl_core.tracking import CONSOLE_COLUMNS

    patterns = [p for _, p in documented()]
    for key, header, _ in CONSOLE_COLUMNS:
        assert any(p.match(key) for p in patterns), f"console column {header!r} reads {key!r}, not a documented metric"
        assert key in written, f"console column {header!r} reads {key!r}, which the test runs never wrote"


def test_the_run_covered_the_families(written) -> None:
    """The run really switched the families on (so the check above was not vacuous)."""
    for key in ("reward/mean", "reward/arithmetic/correct", "eval/arithmetic/correct", "policy/kl_ref",
                "critic/explained_variance",
                "eval/all/pass@1", "timing/values", "timing/ref_logprobs", "weight_sync/verified",
                "startup/logprob_diff_max", "rollout/finish_reason/stop", "rollout/staleness/max",
                "timing/wait_rollouts", "policy/tis_weight_mean"):
        assert key in written, key
