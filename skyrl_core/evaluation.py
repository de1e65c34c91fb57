"""``skyrl eval``: score a model on ``data.eval``.

``run_eval`` generates ``eval.samples_per_prompt`` samples per row (at most
``eval.max_rows`` rows) with the ``[eval]`` sampling settings, then reports, per
``data_source`` and for ``all``:

* ``eval/<source>/score``: mean reward over samples;
* ``eval/<source>/pass@k`` for each k in ``eval.pass_k`` (k <= samples): the unbiased
  estimator 1 - C(n - c, k) / C(n, k) of Chen et al. (2021), averaged over prompts, where a
  sample passes when its reward is > 0;
* ``eval/<source>/response_length``, ``eval/<source>/num_turns``: means;
* ``eval/<source>/finish_reason/<reason>``: counts; ``eval/<source>/env_errors``: count;

and, per environment class, its own metrics (``get_metrics``, aggregated with its
``aggregate_metrics`` as in training's ``reward/<env>/<metric>``) as ``eval/<env>/<metric>``
(``environment_metrics``). Failed trajectories are also reported in one warning line.

It writes ``samples.jsonl`` (one line per sample: prompt, response, reward, finish reason,
data source) and ``summary.json`` to the output folder, each atomically (temporary
file + rename).

Launch: ``skyrl eval examples/quickstart.toml`` (or ``run_eval(cfg, registry)``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyrl_core.checkpoint import atomic_write_text
from skyrl_core.data.rows import load_prompts
from skyrl_core.errors import DataError
from skyrl_core.notices import failure_warning, warn
from skyrl_core.rollout import RolloutBatch, Trajectory
from skyrl_core.specs import Kind

if TYPE_CHECKING:
    from skyrl_core.pipeline.loop import LoopThread

log = logging.getLogger(__name__)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one prompt: ``n`` samples of which ``c`` pass (Chen et al., 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def eval_metrics(trajectories: Sequence[Trajectory], pass_k: Iterable[int]) -> dict[str, float]:
    """``eval/<data_source>/...`` and ``eval/all/...`` metrics of scored trajectories."""
    by_source: dict[str, list[Trajectory]] = {"all": list(trajectories)}
    for t in trajectories:
        by_source.setdefault(t.data_source or "unknown", []).append(t)
    out: dict[str, float] = {}
    for source, trajs in by_source.items():
        prefix = f"eval/{source}"
        n = len(trajs)
        out[f"{prefix}/score"] = sum(t.reward for t in trajs) / n
        out[f"{prefix}/response_length"] = sum(len(t.response_ids) for t in trajs) / n
        out[f"{prefix}/num_turns"] = sum(t.num_turns for t in trajs) / n
        out[f"{prefix}/env_errors"] = float(sum(t.error is not None for t in trajs))
        out[f"{prefix}/num_samples"] = float(n)
        for reason in sorted({"stop", "length", *(t.finish_reason for t in trajs)}):
            out[f"{prefix}/finish_reason/{reason}"] = float(sum(t.finish_reason == reason for t in trajs))
        groups: dict[int, list[Trajectory]] = {}
        for t in trajs:
            groups.setdefault(t.group_id, []).append(t)
        out[f"{prefix}/num_prompts"] = float(len(groups))
        smallest = min(len(g) for g in groups.values())
        for k in pass_k:
            if k > smallest:
                continue
            scores = [pass_at_k(len(g), sum(t.reward > 0 for t in g), k) for g in groups.values()]
            out[f"{prefix}/pass@{k}"] = sum(scores) / len(scores)
    return out


def environment_metrics(batch: RolloutBatch, taken: Mapping[str, float]) -> dict[str, float]:
    """``eval/<env>/<metric>`` from the generator's ``reward/<env>/<metric>`` (the environment's own
    metrics, aggregated over its samples; ``reward/<env>/mean`` is the score, already reported).

    A name already in ``taken`` (a data source named like the environment, with a metric named
    like a data-source metric) moves to ``eval/<env>/env/<metric>`` instead of replacing it.
    """
    envs = sorted({t.env_class for t in batch}, key=len, reverse=True)  # "a/b" before "a"
    out: dict[str, float] = {}
    for key, value in batch.metrics.items():
        env = next((e for e in envs if key.startswith(f"reward/{e}/")), None)
        if env is None or key == f"reward/{env}/mean":
            continue
        name = key[len(f"reward/{env}/") :]
        target = f"eval/{env}/{name}"
        out[f"eval/{env}/env/{name}" if target in taken else target] = value
    return out


def sample_record(t: Trajectory, prompt: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
    """One line of ``samples.jsonl``."""
    turns = t.messages[t.extra.get("prompt_messages", len(prompt)) :]
    replies = [m["content"] for m in turns if m.get("role") == "assistant"]
    record = {
        "uid": t.uid,
        "sample": t.extra.get("sample", 0),
        "data_source": t.data_source,
        "env_class": t.env_class,
        "prompt": prompt,
        "response": replies[-1] if replies else "",
        "reward": t.reward,
        "finish_reason": t.finish_reason,
        "num_turns": t.num_turns,
        "response_tokens": len(t.response_ids),
        "error": t.error,
    }
    if t.num_turns > 1:
        record["turns"] = turns
    return record


def _build_backend(cfg: Any, registry: Any) -> Any:
    """``[backend]`` for ``[model]``, placed as ``[runtime]`` says (the caller shuts Ray down)."""
    from skyrl_core import runtime
    from skyrl_core.components import build_backend, choose

    runtime.configure(cfg.runtime)
    chosen = choose(registry, Kind.BACKEND, cfg.backend.name, cfg.backend.config, "[backend] name")
    return build_backend(cfg, registry, chosen, cfg.model)


def run_eval(
    cfg: Any,
    registry: Any,
    *,
    backend: Any = None,
    tokenizer: Any = None,
    step: int | None = None,
    output_dir: Path | None = None,
    show_progress: bool = True,
    loop: LoopThread | None = None,
) -> dict[str, float]:
    """Evaluate on ``cfg.data.eval``; write ``samples.jsonl`` + ``summary.json``; return the metrics.

    Args:
        cfg: the ``RunConfig``.
        registry: resolves the backend (when built here) and the environments.
        backend: an existing backend (the trainer's); None builds ``[backend]`` here (placed as
            ``[runtime]`` says) and shuts it down afterwards.
        tokenizer: the tokenizer; None loads the one of ``[model]``.
        step: the training step, recorded in the summary.
        output_dir: where the files go (default: ``eval.output`` or ``<run dir>/eval``).
        show_progress: draw a tqdm bar over samples.
        loop: the run's loop thread to generate on (the trainer's); None uses a fresh event loop.
    """
    from tqdm import tqdm

    from skyrl_core.generator import generate_batch

    if not cfg.data.eval:
        raise DataError("data.eval: no evaluation files; list them under [data] eval = [...] (or set data.generate)")
    own_backend = backend is None
    if tokenizer is None or backend is None:
        from skyrl_core.models.tiny import ensure_model

        ensure_model(cfg.model)
    if tokenizer is None:
        from skyrl_core.models.loading import load_tokenizer

        tokenizer = load_tokenizer(cfg.model)
    dataset = load_prompts(cfg, registry, tokenizer, cfg.data.eval, min_rows=1, max_rows=cfg.eval.max_rows)
    samples = cfg.eval.samples_per_prompt
    skipped = [k for k in cfg.eval.pass_k if k > samples]
    if skipped:
        log.warning(
            "eval.pass_k %s skipped: only %d sample(s) per prompt (raise eval.samples_per_prompt)", skipped, samples
        )
    if own_backend:
        backend = _build_backend(cfg, registry)
    bar = tqdm(total=len(dataset) * samples, desc="eval", unit="sample", disable=not show_progress, leave=False)
    try:
        coro = generate_batch(
            dataset.rows,
            backend=backend,
            tokenizer=tokenizer,
            registry=registry,
            config=cfg,
            samples_per_prompt=samples,
            for_eval=True,
            on_trajectory=lambda _: bar.update(1),
        )
        if loop is not None:
            batch = loop.run_until_complete(coro, lend=True)  # nothing trains meanwhile
        else:
            batch = asyncio.run(coro)
    finally:
        bar.close()
        if own_backend and backend is not None:
            backend.shutdown()

    metrics = eval_metrics(batch.trajectories, cfg.eval.pass_k)
    metrics.update(environment_metrics(batch, metrics))
    warn(failure_warning(batch.trajectories, "eval" if step is None else f"eval at step {step}"))
    out = Path(output_dir or cfg.eval.output or Path(cfg.run_dir) / "eval")
    prompts = {r.uid: r.prompt for r in dataset.rows}
    lines = [json.dumps(sample_record(t, prompts[t.uid], tokenizer), ensure_ascii=False) for t in batch]
    atomic_write_text(out / "samples.jsonl", "\n".join(lines) + "\n")
    summary = {
        "step": step,
        "model": cfg.model.path,
        "data": list(cfg.data.eval),
        "num_prompts": len(dataset),
        "num_prompts_too_long": dataset.num_too_long,
        "samples_per_prompt": samples,
        "sampling": {
            "temperature": cfg.eval.temperature,
            "top_p": cfg.eval.top_p,
            "max_new_tokens": cfg.eval.max_new_tokens or cfg.generator.max_new_tokens,
        },
        "metrics": metrics,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return metrics
