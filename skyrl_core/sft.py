"""Supervised fine-tuning: the ``[warm_start]`` phase before RL, and ``skyrl sft``.

Rows hold a ``prompt`` (chat messages) and a ``response`` (the assistant's text), or a
``messages`` list whose last message is the assistant's. The loss is cross-entropy on the
response tokens (plus the end-of-turn token), averaged over the batch's tokens. The result
is exported as a Hugging Face folder under ``<run dir>/warm_start/model``; the RL phase
starts from it (and it is the KL reference). A finished warm start is never redone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from skyrl_core.checkpoint import atomic_write_text
from skyrl_core.components import build_strategy
from skyrl_core.errors import DataError, SkyrlError
from skyrl_core.losses import sft_loss
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.run import RunContext


def _load_rows(files: list[str]) -> list[dict[str, Any]]:
    import datasets

    rows: list[dict[str, Any]] = []
    for f in files:
        path = Path(f)
        if not path.exists():
            raise DataError(f"[warm_start] data: file not found: {f}")
        kind = {".parquet": "parquet", ".json": "json", ".jsonl": "json"}.get(path.suffix)
        if kind is None:
            raise DataError(f"[warm_start] data: {f}: unsupported file type (use .parquet, .json or .jsonl)")
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
        rows.extend(ds.to_list())
    return rows


def encode_example(
    row: dict[str, Any], index: int, tokenizer: Any, source: str, template_kwargs: dict[str, Any] | None = None
) -> tuple[list[int], list[int]]:
    """``(prompt_ids, response_ids)`` of one SFT row; the response ends with the end-of-turn token.
    ``template_kwargs``: extra chat-template variables (``[model] chat_template_kwargs``)."""
    if row.get("messages"):
        messages = list(row["messages"])
        if messages[-1].get("role") != "assistant":
            raise DataError(f"{source}: row {index}: field 'messages' must end with an assistant message")
        prompt, response = messages[:-1], messages[-1]["content"]
    elif "prompt" in row and "response" in row:
        prompt, response = row["prompt"], row["response"]
    else:
        raise DataError(
            f"{source}: row {index}: needs `prompt` (chat messages) and `response` (text), or `messages`; "
            f"found columns {sorted(row)}"
        )
    if not isinstance(response, str):
        raise DataError(f"{source}: row {index}: field 'response' must be text, got {type(response).__name__}")
    from skyrl_core.data.chat import prompt_token_ids

    prompt_ids = prompt_token_ids(tokenizer, prompt, template_kwargs)  # a clear error when there is no chat template
    response_ids = tokenizer.encode(response, add_special_tokens=False)
    if tokenizer.eos_token_id is not None:
        response_ids = [*response_ids, tokenizer.eos_token_id]
    return list(prompt_ids), response_ids


def run_warm_start(run: RunContext) -> Path:
    """Train the ``[warm_start]`` phase (unless already done) and return the exported model folder."""
    from skyrl_core.models.loading import load_tokenizer
    from skyrl_core.models.tiny import ensure_model

    cfg = run.config
    ws = cfg.warm_start
    if ws is None:
        raise SkyrlError("no [warm_start] section in the config")
    out = run.run_dir / "warm_start" / "model"
    if (out / "config.json").is_file():
        print(f"warm start: reusing {out}")
        return out
    ensure_model(cfg.model)
    if ws.generate and not all(Path(f).exists() for f in ws.data):
        from skyrl_core.prepare import run_preparer

        target = Path(ws.data[0]) if ws.data else run.run_dir / "data" / "sft.parquet"
        opts = dict(cfg.data.generate_options) if ws.generate == cfg.data.generate else {}
        files = run_preparer(ws.generate, target.parent, opts, run.registry)
        if "sft" in files and Path(files["sft"]) != target:
            Path(files["sft"]).replace(target)
    if not ws.data:
        raise SkyrlError("[warm_start] data: no files given")
    tokenizer = load_tokenizer(cfg.model)
    rows = _load_rows(ws.data)
    if not rows:
        raise DataError(f"[warm_start] data: {ws.data} holds no rows")
    source = ", ".join(ws.data)
    examples = [encode_example(r, i, tokenizer, source, cfg.model.chat_template_kwargs) for i, r in enumerate(rows)]

    trainer = attrs.evolve(
        cfg.trainer, lr=ws.lr, lr_schedule="cosine", warmup_steps=max(1, ws.steps // 20), grad_clip=1.0
    )
    # The RL phase loads the warm-started model as its base: a LoRA warm start exports merged.
    model_cfg = attrs.evolve(cfg.model, lora=attrs.evolve(cfg.model.lora, export="merged"))
    assert run.components is not None, "run_warm_start needs a run opened by skyrl_core.startup.open_run"
    strategy = build_strategy(
        cfg, run.registry, run.components.strategy, model_cfg, trainer=trainer, total_optimizer_steps=ws.steps
    )
    gen = torch.Generator().manual_seed(cfg.run.seed)
    log_path = run.run_dir / "warm_start" / "metrics.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    losses: list[float] = []
    with log_path.open("w", encoding="utf-8") as log:
        for step in range(1, ws.steps + 1):
            idx = torch.randint(len(examples), (ws.batch_size,), generator=gen).tolist()
            prompts = [examples[i][0] for i in idx]
            responses = [examples[i][1] for i in idx]
            width = max(len(r) for r in responses)
            mask = torch.zeros(len(idx), width)
            for j, r in enumerate(responses):
                mask[j, : len(r)] = 1.0
            metrics = strategy.train_step(TrainBatch(prompts, responses, {"loss_mask": mask}), sft_loss)
            losses.append(metrics.get("sft/loss", float("nan")))
            log.write(json.dumps({"step": step, **metrics}) + "\n")
            if step == 1 or step % max(1, ws.steps // 10) == 0 or step == ws.steps:
                print(f"warm start {step:>4}/{ws.steps}  loss {losses[-1]:.4f}", file=sys.stdout, flush=True)
    strategy.export_hf(out, tokenizer)
    summary = {
        "steps": ws.steps,
        "seconds": time.perf_counter() - start,
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "rows": len(examples),
    }
    atomic_write_text(run.run_dir / "warm_start" / "summary.json", json.dumps(summary, indent=2))
    print(f"warm start: {ws.steps} steps in {summary['seconds']:.1f} s, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    del strategy
    return out
