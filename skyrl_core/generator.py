"""The generator: rows x samples -> a ``RolloutBatch``, token-in/token-out, many trajectories in flight.

For every (row, sample) one environment instance is built from the registry and one
trajectory runs as its own asyncio task (at most ``generator.max_concurrent`` at once)::

    prompt, _ = env.init(row.prompt)              # sync envs run in a thread pool
    ids = chat_template(prompt)                   # templated once, never again
    loop:  model turn   -> tokens appended, loss mask 1, rollout log-probs kept
           env.step     -> reward on the turn's last model token; done? stop
           observations -> templated as a continuation, appended, loss mask 0

Requests that are ready at the same moment are sent to the backend in one
``generate`` call. An environment that raises or exceeds ``generator.env_timeout_s`` (or
its own ``env_timeout_s``, ``HasEnvTimeout``) ends its trajectory with ``finish_reason =
"error"``, the error recorded and reward 0; the other trajectories go on. A step output's
``postprocessed_action`` replaces the model's reply of that turn (SkyRL-Gym's convention).
Backend errors are not caught: they are not the environment's fault and a run cannot
continue without a backend. With ``generator.zero_reward_on_non_stop`` a trajectory that did
not end with ``stop`` (cut by a token or turn limit, or aborted) gets reward 0.

Launch: ``asyncio.run(generate_batch(rows, backend=..., tokenizer=..., registry=...,
config=cfg, samples_per_prompt=4))``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import hashlib
import inspect
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from skyrl_core.data.chat import ChatTokens, encode
from skyrl_core.data.rows import PromptRow, validate_rows
from skyrl_core.protocols.backend import GenerateRequest, GenerateResult, KnowsModelLength, SamplingParams
from skyrl_core.protocols.env import (
    AggregatesMetrics,
    Closeable,
    HasEnvTimeout,
    HasStopStrings,
    ReportsMetrics,
    StepOutput,
)
from skyrl_core.rollout import RolloutBatch, Trajectory
from skyrl_core.specs import Kind

FINISH_REASONS = ("stop", "length", "abort", "error")
ZEROED_REWARD = "reward_before_zeroing"
"""``Trajectory.extra`` key: the reward ``[generator] zero_reward_on_non_stop`` took away."""


class EnvFailure(Exception):
    """An environment raised, timed out or returned something malformed (ends one trajectory)."""


def sampling_params(cfg: Any, chat: ChatTokens, *, for_eval: bool = False) -> SamplingParams:
    """Sampling parameters of one turn from ``[generator]`` (or ``[eval]``), stop ids from the tokenizer.

    ``stop_token_ids`` are the tokenizer's EOS id(s) plus the chat template's end-of-turn
    token (none for training rollouts with ``generator.ignore_eos``); ``stop`` holds
    ``generator.stop`` (environments add their own per trajectory).
    """
    gen = cfg.generator
    if for_eval:
        ev = cfg.eval
        return SamplingParams(
            max_new_tokens=ev.max_new_tokens or gen.max_new_tokens,
            temperature=ev.temperature,
            top_p=ev.top_p,
            top_k=gen.top_k if ev.temperature > 0 else -1,
            min_p=gen.min_p if ev.temperature > 0 else 0.0,
            stop_token_ids=chat.stop_token_ids(),
            stop=tuple(gen.stop),
        )
    return SamplingParams(
        max_new_tokens=gen.max_new_tokens,
        temperature=gen.temperature,
        top_p=gen.top_p,
        top_k=gen.top_k,
        min_p=gen.min_p,
        stop_token_ids=() if gen.ignore_eos else chat.stop_token_ids(),
        stop=tuple(gen.stop),
    )


def request_seed(*parts: Any) -> int:
    """A stable 31-bit seed from ``parts`` (run seed, policy version, row uid, sample, turn)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


class _Batcher:
    """Sends the requests that become ready in the same few loop iterations as one ``generate`` call."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.pending: list[tuple[GenerateRequest, asyncio.Future[GenerateResult]]] = []
        self.scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def submit(self, request: GenerateRequest) -> GenerateResult:
        fut: asyncio.Future[GenerateResult] = asyncio.get_running_loop().create_future()
        self.pending.append((request, fut))
        if not self.scheduled:
            self.scheduled = True
            task = asyncio.get_running_loop().create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _flush(self) -> None:
        for _ in range(3):  # let trajectories that are ready right now join this call
            await asyncio.sleep(0)
        batch, self.pending, self.scheduled = self.pending, [], False
        try:
            results = await self.backend.generate([req for req, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"backend returned {len(results)} results for {len(batch)} requests")
        except BaseException as exc:  # handed to every waiting trajectory
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)


def _as_step_output(out: Any) -> StepOutput:
    """Accept ``StepOutput`` or a SkyRL-Gym style dict; raise ``EnvFailure`` when malformed."""
    if isinstance(out, StepOutput):
        obs, reward, done, meta = out.observations, out.reward, out.done, out.metadata
        action = out.postprocessed_action
    elif isinstance(out, Mapping):
        obs, reward, done = out.get("observations", []), out.get("reward", 0.0), out.get("done")
        meta, action = out.get("metadata"), out.get("postprocessed_action")
        if done is None:
            raise EnvFailure("step() returned a dict without 'done'")
    else:
        raise EnvFailure(f"step() must return StepOutput or a dict, got {type(out).__name__}")
    try:
        reward = float(reward if reward is not None else 0.0)
    except (TypeError, ValueError) as exc:
        raise EnvFailure(f"step() returned a non-numeric reward {reward!r}") from exc
    if not math.isfinite(reward):
        raise EnvFailure(f"step() returned a non-finite reward {reward!r}")
    if action is not None and not isinstance(action, str):
        raise EnvFailure(f"step() returned a postprocessed_action that is not text: {type(action).__name__}")
    messages = _messages(obs or [], "step() observation")
    return StepOutput(
        observations=messages, reward=reward, done=bool(done), metadata=dict(meta or {}), postprocessed_action=action
    )


def _timeout_of(env: Any, default: float) -> tuple[float, str]:
    """The per-call limit of ``env`` and where it comes from (for the timeout message)."""
    own = env.env_timeout_s if isinstance(env, HasEnvTimeout) else None
    if own is None:
        return default, "generator.env_timeout_s"
    if isinstance(own, bool) or not isinstance(own, (int, float)) or not 0 < own < math.inf:
        raise EnvFailure(f"{type(env).__name__}.env_timeout_s must be a positive number of seconds or None, "
                         f"got {own!r}")
    return float(own), f"env_timeout_s of {type(env).__name__}"


def _method(env: Any, name: str) -> Any:
    """A required method of an environment; a missing one fails the trajectory, not the run."""
    try:
        return getattr(env, name)
    except AttributeError as exc:
        raise EnvFailure(
            f"{type(env).__name__} has no {name}() method; an environment implements init(prompt) and "
            "step(action) (see skyrl_core.api.Environment)"
        ) from exc


def _messages(value: Any, what: str) -> list[dict[str, Any]]:
    """Check chat messages returned by an environment (``EnvFailure`` when malformed)."""
    if not isinstance(value, (list, tuple)):
        raise EnvFailure(f"{what}s must be a list of messages, got {type(value).__name__}")
    out = []
    for msg in value:
        ok = isinstance(msg, Mapping) and isinstance(msg.get("role"), str) and isinstance(msg.get("content"), str)
        if not ok:
            raise EnvFailure(f"{what} {msg!r} must be a message {{'role': str, 'content': str}}")
        out.append(dict(msg))
    return out


#: The environment thread pools, one per size, kept between batches (starting up to 32 threads for
#: every batch cost ~5-10 ms of a 2-core CPU step); a pool whose env call timed out is retired.
_ENV_POOLS: dict[int, concurrent.futures.ThreadPoolExecutor] = {}
_ENV_POOLS_LOCK = threading.Lock()


def _env_pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    with _ENV_POOLS_LOCK:
        pool = _ENV_POOLS.get(workers)
        if pool is None:
            pool = _ENV_POOLS[workers] = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="skyrl-env")
        return pool


def _retire_env_pool(workers: int, pool: concurrent.futures.ThreadPoolExecutor) -> None:
    with _ENV_POOLS_LOCK:
        if _ENV_POOLS.get(workers) is pool:  # another batch may have retired it already
            del _ENV_POOLS[workers]
    pool.shutdown(wait=False)  # work another batch queued on it still runs


class Generator:
    """Runs trajectories against an ``InferenceBackend``.

    Args:
        backend: the inference backend.
        tokenizer: the Hugging Face tokenizer (with a chat template).
        registry: resolves ``env_class`` names.
        config: the ``RunConfig`` (``[generator]``, ``[environments.*]``, ``run.seed``).
    """

    def __init__(self, backend: Any, tokenizer: Any, registry: Any, config: Any) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.registry = registry
        self.cfg = config
        self.gen = config.generator
        self.chat = ChatTokens(tokenizer, config.model.chat_template_kwargs)
        self._env_cls: dict[str, tuple[type, Any]] = {}
        self._batcher = _Batcher(backend)
        self._workers = min(32, self.gen.max_concurrent)
        self._pool = _env_pool(self._workers)
        self._stuck_thread = False

    def close(self) -> None:
        """Give the environment thread pool back; after a sync env call timed out in it, retire it instead
        (its thread stuck in the hung env is abandoned; the next batch gets a new pool)."""
        if self._stuck_thread:
            _retire_env_pool(self._workers, self._pool)

    # -- environments ------------------------------------------------------------------------

    def env_class(self, name: str) -> tuple[type, Any]:
        """The environment class and its config (``[environments.<name>]`` or the defaults)."""
        if name not in self._env_cls:
            comp = self.registry.get(Kind.ENVIRONMENT, name, "env_class")
            config = self.cfg.environments.get(name)
            if config is None and comp.spec.config_cls is not None:
                config = comp.spec.config_cls()
            self._env_cls[name] = (comp.load(), config)
        return self._env_cls[name]

    def _new_env(self, name: str, config: Any, extras: dict[str, Any]) -> Any:
        """One environment instance, built by the registry (``Environment(config, extras)``)."""
        return self.registry.create(Kind.ENVIRONMENT, name, config, extras)

    async def _env_call(
        self, phase: str, fn: Callable[..., Any], *args: Any, limit: tuple[float, str] | None = None
    ) -> Any:
        """Run ``fn`` (async, or sync in the thread pool) within ``limit`` (seconds, where that number
        comes from; default ``generator.env_timeout_s``); failures -> ``EnvFailure``."""
        timeout, source = limit or (self.gen.env_timeout_s, "generator.env_timeout_s")
        try:
            if inspect.iscoroutinefunction(fn):
                result = await asyncio.wait_for(fn(*args), timeout)
            else:
                loop = asyncio.get_running_loop()
                try:
                    result = await asyncio.wait_for(loop.run_in_executor(self._pool, functools.partial(fn, *args)),
                                                    timeout)
                except asyncio.TimeoutError:
                    self._stuck_thread = True  # a pool thread may still be inside fn: close() retires the pool
                    raise
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, timeout)
        except asyncio.TimeoutError as exc:
            raise EnvFailure(f"{phase} timed out after {timeout:g} s ({source})") from exc
        except EnvFailure:
            raise
        except Exception as exc:  # the environment's own failure ends only this trajectory
            raise EnvFailure(f"{phase} raised {type(exc).__name__}: {exc}") from exc
        return result

    # -- one trajectory ----------------------------------------------------------------------

    async def run_trajectory(
        self, row: PromptRow, group_id: int, sample: int, params: SamplingParams, policy_version: int = 0
    ) -> Trajectory:
        """Run one episode of ``row``; never raises for environment failures."""
        traj = Trajectory(
            prompt_ids=[], response_ids=[], loss_mask=[], rollout_logprobs=[], token_rewards=[],
            group_id=group_id, uid=row.uid, finish_reason="stop", num_turns=0, env_class=row.env_class,
            data_source=row.data_source, messages=[dict(m) for m in row.prompt], policy_version=policy_version,
        )
        traj.extra["sample"] = sample
        env: Any = None
        _, env_cfg = self.env_class(row.env_class)
        max_turns = int(row.extras.get("max_turns") or self.gen.max_turns)
        extras = {**copy.deepcopy(row.extras), "max_turns": max_turns}
        try:
            env = await self._env_call("__init__", self._new_env, row.env_class, env_cfg, extras)
            limit = _timeout_of(env, self.gen.env_timeout_s)
            init_out = await self._env_call("init", _method(env, "init"), copy.deepcopy(row.prompt), limit=limit)
            if not (isinstance(init_out, (tuple, list)) and len(init_out) == 2):
                raise EnvFailure("init() must return (prompt, metadata)")
            prompt = _messages(init_out[0], "init() prompt message")
            if not prompt:
                raise EnvFailure("init() returned an empty prompt")
            try:
                traj.prompt_ids = self.chat.prompt_ids(prompt)
            except Exception as exc:  # a rewritten prompt the template cannot render
                raise EnvFailure(f"init() returned a prompt the chat template cannot render: {exc}") from exc
            traj.messages = [dict(m) for m in prompt]
            traj.extra["prompt_messages"] = len(prompt)
            own_stops = tuple(env.stop_strings or ()) if isinstance(env, HasStopStrings) else ()
            stops = tuple(dict.fromkeys([*params.stop, *own_stops]))
            await self._turns(traj, env, attrs.evolve(params, stop=stops, n=1), max_turns, limit)
        except EnvFailure as exc:
            traj.error = f"{row.env_class}: {exc}"
            traj.finish_reason = "error"
            traj.token_rewards = [0.0] * len(traj.response_ids)
        finally:
            if env is not None:
                await self._finish_env(traj, env)
        if self.gen.zero_reward_on_non_stop and traj.finish_reason not in ("stop", "error"):
            traj.extra[ZEROED_REWARD] = traj.reward  # an unfinished answer earns nothing
            traj.token_rewards = [0.0] * len(traj.token_rewards)
        traj.check()
        return traj

    async def _turns(
        self, traj: Trajectory, env: Any, params: SamplingParams, max_turns: int, env_limit: tuple[float, str]
    ) -> None:
        engine_limit = self.backend.max_model_len if isinstance(self.backend, KnowsModelLength) else None
        limit = min(self.gen.max_total_tokens, engine_limit or math.inf)
        for turn in range(max_turns):
            budget = limit - len(traj.prompt_ids) - len(traj.response_ids)
            if budget <= 0:
                traj.finish_reason, traj.extra["cut_by"] = "length", "max_total_tokens"
                return
            seed = request_seed(self.cfg.run.seed, traj.policy_version, traj.uid, traj.extra["sample"], turn)
            request = GenerateRequest(
                prompt_ids=(*traj.prompt_ids, *traj.response_ids),
                params=attrs.evolve(params, max_new_tokens=min(params.max_new_tokens, budget), seed=seed),
            )
            completion = (await self._batcher.submit(request)).completions[0]
            tokens, logprobs = list(completion.token_ids), [float(x) for x in completion.logprobs]
            if len(tokens) != len(logprobs):
                raise RuntimeError(f"backend returned {len(tokens)} tokens but {len(logprobs)} log-probs")
            traj.response_ids += tokens
            traj.loss_mask += [1] * len(tokens)
            traj.rollout_logprobs += logprobs
            traj.token_rewards += [0.0] * len(tokens)
            traj.num_turns += 1
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            traj.messages.append({"role": "assistant", "content": text})
            traj.finish_reason = completion.finish_reason
            if completion.finish_reason == "abort":
                return
            out = _as_step_output(await self._env_call("step", _method(env, "step"), text, limit=env_limit))
            fits = True
            if out.postprocessed_action is not None and out.postprocessed_action != text:
                tokens, fits = self._replace_action(traj, tokens, out.postprocessed_action, limit)
            self._credit(traj, out.reward)
            if out.metadata:
                traj.extra.setdefault("step_metadata", []).append(out.metadata)
            if out.done or not fits:
                return
            if turn + 1 >= max_turns:
                traj.finish_reason, traj.extra["cut_by"] = "length", "max_turns"
                return
            try:
                glue = encode(self.tokenizer, self.chat.glue_text(tokens[-1] if tokens else None, out.observations))
            except Exception as exc:  # a template that cannot render the observations
                raise EnvFailure(f"observations could not be templated: {type(exc).__name__}: {exc}") from exc
            if len(traj.prompt_ids) + len(traj.response_ids) + len(glue) >= limit:
                traj.finish_reason, traj.extra["cut_by"] = "length", "max_total_tokens"
                return
            traj.response_ids += glue
            traj.loss_mask += [0] * len(glue)
            traj.rollout_logprobs += [0.0] * len(glue)
            traj.token_rewards += [0.0] * len(glue)
            traj.messages += out.observations

    def _replace_action(
        self, traj: Trajectory, sampled: list[int], action: str, limit: float
    ) -> tuple[list[int], bool]:
        """Replace the turn just sampled (the last ``len(sampled)`` response tokens) by ``action``.

        The new tokens are ``action`` encoded, plus the end-of-turn token when the model ended
        its turn with one (it is not part of the reply text); loss mask 1; the engine's
        log-probs where they agree with the sampled tokens, 0.0 after. Returns the new tokens
        and whether they fitted in ``limit`` (when not, they are cut and the episode ends
        with finish reason 'length').
        """
        start = len(traj.response_ids) - len(sampled)
        new = encode(self.tokenizer, action)
        if sampled and sampled[-1] in self.chat.stop_token_ids():
            new.append(sampled[-1])
        room = int(min(limit - len(traj.prompt_ids) - start, len(new)))
        fits = room == len(new)
        new = new[:room]
        same = 0
        while same < min(len(new), len(sampled)) and new[same] == sampled[same]:
            same += 1
        logprobs = traj.rollout_logprobs[start : start + same] + [0.0] * (len(new) - same)
        traj.response_ids[start:] = new
        traj.loss_mask[start:] = [1] * len(new)
        traj.rollout_logprobs[start:] = logprobs
        traj.token_rewards[start:] = [0.0] * len(new)
        traj.messages[-1] = {"role": "assistant", "content": action}
        traj.extra["postprocessed_turns"] = traj.extra.get("postprocessed_turns", 0) + 1
        if not fits:
            traj.finish_reason, traj.extra["cut_by"] = "length", "max_total_tokens"
        return new, fits

    @staticmethod
    def _credit(traj: Trajectory, reward: float) -> None:
        """Put a turn's reward on the last model token so far."""
        for i in range(len(traj.loss_mask) - 1, -1, -1):
            if traj.loss_mask[i]:
                traj.token_rewards[i] += reward
                return
        if reward:
            traj.extra["unplaced_reward"] = traj.extra.get("unplaced_reward", 0.0) + reward

    async def _finish_env(self, traj: Trajectory, env: Any) -> None:
        """Metrics, drift check and ``close``; failures here are recorded, never raised."""
        try:
            limit = _timeout_of(env, self.gen.env_timeout_s)
        except EnvFailure:  # already reported by run_trajectory
            limit = None
        if traj.error is None:
            try:
                has = isinstance(env, ReportsMetrics)
                metrics = await self._env_call("get_metrics", env.get_metrics, limit=limit) if has else {}
                traj.env_metrics = {k: float(v) for k, v in dict(metrics or {}).items()}
            except (EnvFailure, TypeError, ValueError) as exc:
                traj.extra["metrics_error"] = str(exc)
            if self.gen.drift_check and traj.response_ids:
                ids = [*traj.prompt_ids, *traj.response_ids]
                try:
                    traj.extra["retokenize_drift"] = not self.chat.matches_template(ids, traj.messages)
                except Exception as exc:  # a diagnostic must never fail the batch
                    traj.extra["drift_check_error"] = f"{type(exc).__name__}: {exc}"
        if isinstance(env, Closeable):
            try:
                await self._env_call("close", env.close, limit=limit)
            except EnvFailure as exc:
                traj.extra["close_error"] = str(exc)

    # -- a batch ---------------------------------------------------------------------------

    async def generate(
        self,
        rows: Sequence[PromptRow | Mapping[str, Any]],
        samples_per_prompt: int,
        *,
        params: SamplingParams | None = None,
        policy_version: int = 0,
        on_trajectory: Callable[[Trajectory], None] | None = None,
    ) -> RolloutBatch:
        """``samples_per_prompt`` trajectories per row; group ``i`` holds the samples of ``rows[i]``.

        Trajectories are returned in (row, sample) order whatever order they finish in.
        ``on_trajectory`` is called as each one finishes (progress bars).
        """
        prompt_rows = as_rows(rows, self.cfg.data.default_env_class, self.registry, self.cfg.data.env_map)
        params = params or sampling_params(self.cfg, self.chat)
        self._batcher = _Batcher(self.backend)  # fresh per call: its tasks belong to the running loop
        semaphore = asyncio.Semaphore(self.gen.max_concurrent)

        async def one(row: PromptRow, group: int, sample: int) -> Trajectory:
            async with semaphore:
                traj = await self.run_trajectory(row, group, sample, params, policy_version)
            if on_trajectory is not None:
                on_trajectory(traj)
            return traj

        tasks = [
            asyncio.ensure_future(one(r, g, s)) for g, r in enumerate(prompt_rows) for s in range(samples_per_prompt)
        ]
        try:
            trajectories = list(await asyncio.gather(*tasks))
        except BaseException:  # a backend failure: stop the other trajectories too
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return RolloutBatch(trajectories=trajectories, metrics=self.metrics(trajectories))

    def metrics(self, trajectories: Sequence[Trajectory]) -> dict[str, float]:
        """``rollout/`` and ``reward/`` metrics of a batch (env metrics via each class's ``aggregate_metrics``)."""
        out = rollout_metrics(trajectories)
        if self.gen.zero_reward_on_non_stop and trajectories:
            zeroed = [t for t in trajectories if ZEROED_REWARD in t.extra]
            out["reward/zeroed_non_stop"] = len(zeroed) / len(trajectories)
        by_env: dict[str, list[Trajectory]] = {}
        for t in trajectories:
            by_env.setdefault(t.env_class, []).append(t)
        for name, group in sorted(by_env.items()):
            out[f"reward/{name}/mean"] = sum(t.reward for t in group) / len(group)
            metrics = [t.env_metrics for t in group if t.error is None and t.env_metrics]
            if not metrics:
                continue
            cls = self.env_class(name)[0]
            own = isinstance(cls, AggregatesMetrics)
            try:
                values = cls.aggregate_metrics(metrics) if own else _mean_metrics(metrics)
            except Exception as exc:  # a broken aggregate must not lose the batch
                values = _mean_metrics(metrics)
                out[f"reward/{name}/aggregate_error"] = 1.0
                for t in group:
                    t.extra.setdefault("aggregate_error", f"{type(exc).__name__}: {exc}")
            for key, value in dict(values).items():
                out[f"reward/{name}/{key}"] = float(value)
        return out


def _mean_metrics(metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
    keys = sorted({k for m in metrics for k in m})
    return {k: sum(float(m[k]) for m in metrics if k in m) / sum(1 for m in metrics if k in m) for k in keys}


def rollout_metrics(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Batch-level ``rollout/`` and ``reward/`` numbers (no per-env ones)."""
    n = len(trajectories)
    if n == 0:
        return {}
    lengths = [len(t.response_ids) for t in trajectories]
    rewards = [t.reward for t in trajectories]
    mean = sum(rewards) / n
    out = {
        "rollout/response_length/mean": sum(lengths) / n,
        "rollout/response_length/max": float(max(lengths)),
        "rollout/model_tokens/mean": sum(sum(t.loss_mask) for t in trajectories) / n,
        "rollout/prompt_length/mean": sum(len(t.prompt_ids) for t in trajectories) / n,
        "rollout/num_turns/mean": sum(t.num_turns for t in trajectories) / n,
        "rollout/env_errors": float(sum(t.error is not None for t in trajectories)),
        "reward/mean": mean,
        "reward/std": math.sqrt(sum((r - mean) ** 2 for r in rewards) / n),
    }
    reasons = sorted({*FINISH_REASONS, *(t.finish_reason for t in trajectories)})
    for reason in reasons:
        out[f"rollout/finish_reason/{reason}"] = sum(t.finish_reason == reason for t in trajectories) / n
    checked = [t.extra["retokenize_drift"] for t in trajectories if "retokenize_drift" in t.extra]
    if checked:
        out["rollout/retokenize_drift"] = sum(checked) / len(checked)
    replaced = sum("postprocessed_turns" in t.extra for t in trajectories)
    if replaced:  # environments that rewrite replies (postprocessed_action) are rare: shown only then
        out["rollout/postprocessed_actions"] = replaced / n
    return out


def as_rows(
    rows: Sequence[PromptRow | Mapping[str, Any]],
    default_env_class: str | None,
    registry: Any,
    env_map: Mapping[str, str] | None = None,
) -> list[PromptRow]:
    """Validate plain dict rows (``PromptRow``s pass through)."""
    raw = [(i, r) for i, r in enumerate(rows) if not isinstance(r, PromptRow)]
    if not raw:
        return list(rows)  # type: ignore[arg-type]
    checked = iter(
        validate_rows(
            [("rows", i, r) for i, r in raw],
            default_env_class=default_env_class,
            registry=registry,
            what="generator",
            env_map=env_map,
        )
    )
    return [r if isinstance(r, PromptRow) else attrs.evolve(next(checked), uid=str(i)) for i, r in enumerate(rows)]


async def generate_batch(
    rows: Sequence[PromptRow | Mapping[str, Any]],
    *,
    backend: Any,
    tokenizer: Any,
    registry: Any,
    config: Any,
    samples_per_prompt: int,
    policy_version: int = 0,
    for_eval: bool = False,
    on_trajectory: Callable[[Trajectory], None] | None = None,
) -> RolloutBatch:
    """Generate ``samples_per_prompt`` trajectories for each row (see ``Generator.generate``).

    ``for_eval`` takes the sampling settings from ``[eval]`` instead of ``[generator]``.
    """
    gen = Generator(backend, tokenizer, registry, config)
    try:
        params = sampling_params(config, gen.chat, for_eval=for_eval)
        return await gen.generate(
            rows, samples_per_prompt, params=params, policy_version=policy_version, on_trajectory=on_trajectory
        )
    finally:
        gen.close()
