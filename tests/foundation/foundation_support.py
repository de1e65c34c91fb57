"""Constants and helpers shared by the foundation tests.

A module with a unique name (not ``conftest``): when pytest collects several folders, each
with a conftest.py, ``from conftest import ...`` may find another folder's conftest.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DISTS = REPO / "tests" / "fixtures" / "dists"

# A config that selects only components of the `everything` test plugin, so that it stays
# valid whatever builtins exist (the trackers are skyrl-core's own).
BASE_TOML = """\
[model]
path = "some/model"

[backend]
name = "t_backend"

[strategy]
name = "t_strategy"

[algorithm.advantage]
name = "t_adv"

[algorithm.policy_loss]
name = "t_loss"
"""


def site(name: str) -> Path:
    """The folder of one test distribution (e.g. ``site("broken")``)."""
    path = DISTS / name
    assert path.is_dir(), f"no test distribution {name!r} under {DISTS}"
    return path
