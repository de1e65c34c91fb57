"""What a run tells the user on the console about itself, in sentences rather than dicts.

* ``restart_notice``: what a restart found: no checkpoint (starting over), a checkpoint (resumed
  at step N, redoing the steps an earlier attempt had done after it), or a finished run.
* ``failure_warning``: one line when trajectories of a step (or an evaluation) failed in their
  environment: how many, in which environments, and the first error.

The earlier attempts come from ``manifest.json`` (``skyrl_core.manifest.RunManifest``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skyrl_core.rollout import Trajectory

MAX_ERROR_CHARS = 300


def furthest_step(attempts: Sequence[Mapping[str, Any]]) -> int | None:
    """The last step logged by the attempts since the run last started from step 0 (None: unknown).

    An attempt that started over superseded what the ones before it had logged.
    """
    furthest: int | None = None
    for attempt in attempts:
        last = attempt.get("last_step")
        if not attempt.get("resumed_from"):
            furthest = last if isinstance(last, int) else None
        elif isinstance(last, int):
            furthest = last if furthest is None else max(furthest, last)
    return furthest


def restart_notice(
    attempts: Sequence[Mapping[str, Any]],
    *,
    resume: str,
    checkpoints: Path,
    resumed_from: Path | None,
    state: Mapping[str, Any] | None,
    target_steps: int,
) -> str | None:
    """The line a run prints about where it starts; None for the first attempt of a fresh run.

    Args:
        attempts: the earlier attempts of this run (``RunManifest.previous``).
        resume: ``[checkpoint] resume``.
        checkpoints: the run's checkpoint folder.
        resumed_from: the checkpoint this attempt resumes from, or None.
        state: that checkpoint's trainer state.
        target_steps: ``[trainer] steps``.
    """
    if resumed_from is not None and state is not None:
        step = int(state["step"])
        where = f"resumed from {resumed_from} at step {step}"
        if step >= target_steps:
            return (
                f"{where}: the run is already complete (trainer.steps = {target_steps}); nothing to train. "
                f'Raise trainer.steps to train further, or set checkpoint.resume = "never" to start over.'
            )
        furthest = furthest_step(attempts)
        data = _data_position(state.get("loader"))
        if furthest is not None and furthest > step:
            last = min(furthest, target_steps)
            redo = f"step {step + 1}" if last == step + 1 else f"steps {step + 1}..{last}"
            return (
                f"{where} of {target_steps}: redoing {redo}, which an earlier attempt had done after this "
                f"checkpoint; their rows in the metrics are replaced{data}"
            )
        return f"{where} of {target_steps}: continuing with step {step + 1}{data}"
    if not attempts:
        return None
    if resume == "never":
        return f'checkpoint.resume = "never": starting over from step 0 (attempt {len(attempts) + 1})'
    furthest = furthest_step(attempts)
    if furthest is None or furthest < 1:
        got = "the previous attempt stopped before finishing step 1"
    else:
        got = f"the previous attempt got to step {furthest} without saving a checkpoint"
    return f"no checkpoint in {checkpoints}: starting over from step 0 ({got})"


def _data_position(loader: Any) -> str:
    if not isinstance(loader, Mapping) or not {"epoch", "position", "num_rows"} <= loader.keys():
        return ""
    pending = len(loader.get("pending") or [])
    queued = f", {pending} drawn prompts to generate again first" if pending else ""
    return f" (data: epoch {loader['epoch']}, prompt {loader['position']} of {loader['num_rows']}{queued})"


def failure_warning(trajectories: Sequence[Trajectory], where: str, reported: float | None = None) -> str | None:
    """One line about the trajectories whose environment raised or timed out; None when none did.

    Args:
        trajectories: the step's (or evaluation's) trajectories.
        where: e.g. ``"step 3"`` or ``"eval at step 10"``.
        reported: ``rollout/env_errors`` when the count there can be larger (a plugin's
            collection, e.g. DAPO's dynamic sampling, drops groups before training).
    """
    failed = [t for t in trajectories if t.error is not None]
    total = max(len(failed), int(reported or 0))
    if not total:
        return None
    counts = Counter(t.env_class or "?" for t in failed)
    envs = ", ".join(f"{name}: {n}" for name, n in counts.most_common())
    if total == len(failed):
        head = f"{total} of {len(trajectories)} trajectories failed in their environment and scored 0 ({envs})"
    else:
        head = f"{total} trajectories failed in their environment and scored 0"
        head += f" ({len(failed)} of them kept for training: {envs})" if failed else " (none kept for training)"
    first = ""
    if failed:
        error = str(failed[0].error).strip().splitlines()[0] if str(failed[0].error).strip() else "?"
        first = f"; first error: {error[:MAX_ERROR_CHARS]}{'...' if len(error) > MAX_ERROR_CHARS else ''}"
    return f"warning: {where}: {head}{first}"


def warn(message: str | None) -> None:
    """Print a warning on stderr without breaking a progress bar."""
    if not message:
        return
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
