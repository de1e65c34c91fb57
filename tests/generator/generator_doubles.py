"""Generator test helpers: a scripted backend (test double) and test environments (imported by the tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from skyrl_core.data.chat import encode
from skyrl_core.plugins import hookimpl
from skyrl_core.protocols.backend import Completion, GenerateRequest, GenerateResult
from skyrl_core.protocols.env import StepOutput, TextEnv
from skyrl_core.specs import ComponentSpec

Reply = str | list[int]


class ScriptedBackend:
    """Test double of an ``InferenceBackend``: replays fixed replies instead of sampling a model.

    Used only where token accounting must be checked against known completions; the real
    ``NativeBackend`` is exercised on the tiny model in ``test_generator_native.py``.

    ``script(context_text, turn)`` returns the reply for a request, as text (encoded with the
    real tokenizer) or as explicit token ids. The end-of-turn token is appended unless the
    reply hits a stop string (then it is cut right after the stop string, finish "stop") or
    ``max_new_tokens`` (cut, finish "length"), like a real backend. Log-probs are
    ``-(i + 1) / 100`` for the i-th token of each completion, so alignment can be checked.
    """

    def __init__(self, tokenizer: Any, script: Callable[[str, int], Reply], end_of_turn: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.end_of_turn = tokenizer.eos_token_id if end_of_turn is None else end_of_turn
        self.requests: list[GenerateRequest] = []
        self.calls = 0

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        self.calls += 1
        await asyncio.sleep(0)
        out = []
        for req in requests:
            self.requests.append(req)
            context = self.tokenizer.decode(list(req.prompt_ids), skip_special_tokens=False)
            turn = context.count("<|im_start|>assistant") - 1
            reply = self.script(context, turn)
            out.append(GenerateResult([self._complete(reply, req)]))
        return out

    def _complete(self, reply: Reply, req: GenerateRequest) -> Completion:
        p = req.params
        finish, stop_reason = "stop", None
        if isinstance(reply, str):
            cut = min(((reply.find(s) + len(s), s) for s in p.stop if s in reply), default=None)
            if cut is not None:
                reply, stop_reason = reply[: cut[0]], cut[1]
            ids = encode(self.tokenizer, reply)
            if stop_reason is None:
                ids.append(self.end_of_turn)
                stop_reason = self.end_of_turn
        else:
            ids = [*reply, self.end_of_turn]
            stop_reason = self.end_of_turn
        if len(ids) > p.max_new_tokens:
            ids, finish, stop_reason = ids[: p.max_new_tokens], "length", None
        logprobs = [-(i + 1) / 100 for i in range(len(ids))]
        return Completion(ids, logprobs, finish, stop_reason, self.tokenizer.decode(ids))


class EchoEnv(TextEnv):
    """Test multi-turn env: answers each reply with an observation until the reply says FINAL.

    Reward 0.1 per non-final turn, 1.0 for a FINAL reply, 0 for running out of turns.
    """

    def step(self, action: str) -> StepOutput:
        self.turns += 1
        if "FINAL" in action:
            return StepOutput(observations=[], reward=1.0, done=True)
        if self.turns >= self.max_turns:
            return StepOutput(observations=[], reward=0.0, done=True)
        return StepOutput(
            observations=[{"role": "user", "content": f"Observation {self.turns}: ok"}], reward=0.1, done=False
        )

    def get_metrics(self) -> dict[str, float]:
        return {"turns": float(self.turns)}


class StopStringEnv(EchoEnv):
    """``EchoEnv`` that asks the generator to stop at ``</call>``."""

    stop_strings = ("</call>",)


class RaisingEnv(TextEnv):
    """Raises inside ``step``."""

    def step(self, action: str) -> StepOutput:
        raise RuntimeError("database connection lost")


class InitRaisingEnv(TextEnv):
    """Raises inside ``init``."""

    def init(self, prompt):
        raise KeyError("missing column")

    def step(self, action: str) -> StepOutput:  # pragma: no cover - never reached
        return StepOutput()


RELEASE = threading.Event()


class SlowEnv(TextEnv):
    """A sync ``step`` that blocks until the test releases it (far beyond the timeout)."""

    def step(self, action: str) -> StepOutput:
        RELEASE.wait(10)
        return StepOutput(reward=1.0, done=True)


class SlowAsyncEnv(TextEnv):
    """An ``async`` step that sleeps past the timeout."""

    async def step(self, action: str) -> StepOutput:
        await asyncio.sleep(10)
        return StepOutput(reward=1.0, done=True)


class BadOutputEnv(TextEnv):
    """Returns a reward that is not a number."""

    def step(self, action: str) -> dict[str, Any]:
        return {"observations": [], "reward": "lots", "done": True}


class AsyncToolEnv(TextEnv):
    """An ``async`` multi-turn env (I/O-bound tools are written like this)."""

    async def step(self, action: str) -> StepOutput:
        await asyncio.sleep(0.001)
        self.turns += 1
        done = self.turns >= self.max_turns
        obs = [] if done else [{"role": "user", "content": "tool says 7"}]
        return StepOutput(observations=obs, reward=0.5 if done else 0.0, done=done)


class BadInitEnv(TextEnv):
    """``init`` returns a message without content."""

    def init(self, prompt):
        return [{"role": "user"}], {}

    def step(self, action: str) -> StepOutput:  # pragma: no cover - never reached
        return StepOutput()


class NeverDoneEnv(TextEnv):
    """Ignores ``max_turns`` and never ends: the generator's own turn limit must stop it."""

    def step(self, action: str) -> StepOutput:
        return StepOutput(observations=[{"role": "user", "content": "again"}], reward=0.0, done=False)


class EnvsPlugin:
    """Registers the test environments."""

    @hookimpl
    def skyrl_register_environments(self) -> list[ComponentSpec]:
        envs = {
            "echo": EchoEnv,
            "stopstr": StopStringEnv,
            "raising": RaisingEnv,
            "init_raising": InitRaisingEnv,
            "slow": SlowEnv,
            "slow_async": SlowAsyncEnv,
            "bad_output": BadOutputEnv,
            "async_tool": AsyncToolEnv,
            "never_done": NeverDoneEnv,
            "bad_init": BadInitEnv,
        }
        return [ComponentSpec(name, cls, f"test env {name}") for name, cls in envs.items()]
