"""A step's rollouts and the weight sync after it: the pieces every pipeline is built from.

Below both the trainer and the pipelines (``sync``, ``one_step_off``, ``async``), so that
nothing calls back up into the loop:

* ``sample_rollouts(run, k, ticket)``: draw ``k`` prompts under a ticket, generate
  ``samples_per_prompt`` each, shape rewards (``skyrl_shape_rewards``);
* ``collect_rollouts(run, sample)``: one step's batch, through a plugin's
  ``skyrl_collect_rollouts`` (e.g. DAPO's dynamic sampling) or one ``sample`` round;
* ``sync_weights(run)``: push the policy's weights to the backend and count a new version.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from skyrl_core.rollout import RolloutBatch, Trajectory

if TYPE_CHECKING:
    from skyrl_core.run import RunContext

Sampler = Callable[[int], RolloutBatch]


def generate_rows(
    run: RunContext, rows: Sequence[Any], samples_per_prompt: int, config: Any = None, *, lend: bool = False
) -> RolloutBatch:
    """``samples_per_prompt`` trajectories of each row with the backend's current weights, on the
    run's loop (``config`` overrides the run's config, e.g. shorter generations). ``lend``: the
    calling thread decodes for a CPU backend while it waits (``LoopThread.run_until_complete``)."""
    from skyrl_core.generator import generate_batch

    return run.loop.run_until_complete(
        generate_batch(
            rows,
            backend=run.backend,
            tokenizer=run.tokenizer,
            registry=run.registry,
            config=config or run.config,
            samples_per_prompt=samples_per_prompt,
            policy_version=run.policy_version,
        ),
        lend=lend,
    )


def sample_rollouts(run: RunContext, num_prompts: int, ticket: Hashable = None, *, lend: bool = False) -> RolloutBatch:
    """Draw ``num_prompts`` prompts (remembered under ``ticket`` by a tracking loader), generate
    ``samples_per_prompt`` each on the run's loop (``lend``: see ``generate_rows``), then let
    plugins shape the rewards."""
    rows = run.train_loader.draw(num_prompts, ticket)
    batch = generate_rows(run, rows, run.config.trainer.samples_per_prompt, lend=lend)
    run.registry.hook.skyrl_shape_rewards(run=run, batch=batch)
    return batch


def collect_rollouts(run: RunContext, sample: Sampler) -> RolloutBatch:
    """One step's rollouts: a plugin's ``skyrl_collect_rollouts`` or a single ``sample`` round.

    ``sample(k)`` returns ``k`` prompt groups: generated now (``sample_rollouts``), or taken
    from the buffer that ``[trainer] mode = "async"`` fills in the background.
    """
    quota = run.config.trainer.prompts_per_step
    batch = run.registry.hook.skyrl_collect_rollouts(run=run, sample=sample, num_prompts=quota)
    return batch if batch is not None else sample(quota)


def sync_weights(run: RunContext, new_version: bool = True) -> dict[str, float]:
    """Push the policy's weights to the backend (bucketed; the transport follows ``[runtime]``
    placement and what the components declare), then drop its prefix cache.

    ``new_version`` counts the weights as a new policy version; a resume re-sends the
    checkpoint's weights under the version they were saved with, so sampling seeds (which
    include the version) continue exactly as in an uninterrupted run.

    Returns:
        ``transfer_weights``'s metrics (``weight_sync/bytes``, ``weight_sync/buckets``, ...;
        ``weight_sync/adapter`` = 1 when only a LoRA adapter was sent).
    """
    from skyrl_core.runtime.weight_sync import transfer_weights

    stats = transfer_weights(run.strategy, run.backend, run.config.runtime)
    run.backend.reset_prefix_cache()
    if new_version:
        run.policy_version += 1
    return stats


def staleness_metrics(trajectories: Sequence[Trajectory], version: int) -> dict[str, float]:
    """``rollout/staleness/mean`` and ``/max``: how many versions each sample's weights lag behind
    ``version`` (the weights the step trains from)."""
    lags = [version - t.policy_version for t in trajectories]
    if not lags:
        return {}
    return {"rollout/staleness/mean": sum(lags) / len(lags), "rollout/staleness/max": float(max(lags))}

