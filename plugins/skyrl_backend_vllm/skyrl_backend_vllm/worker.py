"""The weight loader that runs inside vLLM's workers (``worker_extension_cls``).

vLLM mixes ``SkyrlWorkerExtension`` into its worker class; the backend calls its methods
through ``collective_rpc``: ``skyrl_load_weights`` with ``(name, tensor)`` pairs when the
worker lives in the caller's process, ``skyrl_load_file`` with a safetensors file otherwise
(tensors cannot cross vLLM's RPC). A ``vllm serve`` started with
``--worker-extension-cls skyrl_backend_vllm.worker.SkyrlWorkerExtension`` and
``VLLM_SERVER_DEV_MODE=1`` loads files the same way through its ``/collective_rpc`` route.

Names are Hugging Face parameter names. How they reach the model depends on the platform:

* CPU: vLLM repacks linear weights for its CPU kernels, so ``model.load_weights`` cannot
  write into them. The loader goes through vLLM's layer-wise reloader
  (``model_runner.reload_weights``), which processes a module only once *all* of its
  weights arrived (q/k/v are one fused module) and fills a partly sent one with garbage.
  So the worker keeps a CPU copy of the current weights (read from the checkpoint at the
  first update, then kept up to date) and always reloads whole decoder layers: the new
  tensors plus the copy's values for the rest of each touched layer.
* GPU (not verified on this project's machines): weights are not repacked, and
  ``model.load_weights`` copies each tensor into its shard of the fused parameters, so
  partial updates need no copy.

Every update is checked first (unknown names with suggestions, shape mismatches); nothing
is loaded when one is wrong.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

import torch

_LAYER = re.compile(r"^(.*?\.\d+)\.")  # outermost indexed block, e.g. "model.layers.3"


def group_of(name: str) -> str:
    """The reload unit of a parameter: its decoder layer, else its module."""
    match = _LAYER.match(name)
    return match.group(1) if match else name.rpartition(".")[0]


class SkyrlWorkerExtension:
    """Methods skyrl calls on a vLLM worker (see the module docstring)."""

    # -- entry points (collective_rpc) ------------------------------------------------------

    def skyrl_load_weights(self, named: list[tuple[str, torch.Tensor]]) -> int:
        """Load ``(name, tensor)`` pairs; returns how many were loaded."""
        return self._skyrl_apply(list(named))

    def skyrl_load_file(self, path: str) -> int:
        """Load every tensor of the safetensors file ``path``; returns how many were loaded."""
        from safetensors.torch import load_file

        return self._skyrl_apply(list(load_file(path).items()))

    def skyrl_weight_names(self) -> dict[str, list[int]]:
        """Hugging Face names this worker accepts, with their shapes."""
        return {name: list(shape) for name, shape in self._skyrl_expected().items()}

    # -- implementation ---------------------------------------------------------------------

    def _skyrl_apply(self, named: list[tuple[str, torch.Tensor]]) -> int:
        named = self._skyrl_untie(named)
        self._skyrl_check(named)
        if not named:
            return 0
        from vllm.config import set_current_vllm_config

        with torch.no_grad():
            if self._skyrl_repacked():
                self._skyrl_reload_layers(named)
            else:
                with set_current_vllm_config(self.vllm_config):
                    self.model_runner.model.load_weights(iter(named))
        return len(named)

    def _skyrl_repacked(self) -> bool:
        from vllm.platforms import current_platform

        return current_platform.is_cpu()

    def _skyrl_tied(self) -> bool:
        return bool(getattr(self.model_config.hf_config, "tie_word_embeddings", False))

    def _skyrl_untie(self, named: list[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
        """With tied embeddings ``lm_head.weight`` *is* ``model.embed_tokens.weight``: keep one name."""
        if not self._skyrl_tied():
            return named
        names = {n for n, _ in named}
        embed = next((n for n in self._skyrl_expected() if n.endswith("embed_tokens.weight")), None)
        out = []
        for name, tensor in named:
            if name == "lm_head.weight" and embed is not None and "lm_head.weight" not in self._skyrl_expected():
                if embed in names:
                    continue  # the same tensor was sent under both names
                name = embed
            out.append((name, tensor))
        return out

    def _skyrl_expected(self) -> dict[str, tuple[int, ...]]:
        """Checkpoint parameter names and shapes (read once, from the files vLLM loaded)."""
        expected = getattr(self, "_skyrl_names", None)
        if expected is None:
            if getattr(self, "_skyrl_copy", None) is None and self._skyrl_repacked():
                self._skyrl_shadow()  # reads the checkpoint anyway
            else:
                self._skyrl_names = {n: tuple(t.shape) for n, t in self._skyrl_checkpoint()}
            expected = self._skyrl_names
        return expected

    def _skyrl_checkpoint(self) -> Iterable[tuple[str, torch.Tensor]]:
        from vllm.model_executor.model_loader import get_model_loader

        loader = get_model_loader(self.vllm_config.load_config)
        return loader.get_all_weights(self.model_config, self.model_runner.model)

    def _skyrl_shadow(self) -> dict[str, torch.Tensor]:
        """The CPU copy of the current weights (CPU platform only), in the engine's dtype."""
        copy = getattr(self, "_skyrl_copy", None)
        if copy is None:
            dtype = self.model_config.dtype
            copy = {n: t.detach().to("cpu", dtype=dtype, copy=True) for n, t in self._skyrl_checkpoint()}
            self._skyrl_copy = copy
            self._skyrl_names = {n: tuple(t.shape) for n, t in copy.items()}
        return copy

    def _skyrl_check(self, named: list[tuple[str, torch.Tensor]]) -> None:
        expected = self._skyrl_expected()
        unknown = [n for n, _ in named if n not in expected]
        mismatched = [
            f"{n}: got {tuple(t.shape)}, model has {expected[n]}"
            for n, t in named
            if n in expected and tuple(t.shape) != expected[n]
        ]
        if not unknown and not mismatched:
            return
        lines = ["vLLM update_weights: nothing was loaded, because:"]
        for name in unknown[:20]:
            close = difflib.get_close_matches(name, list(expected), n=1, cutoff=0.6)
            lines.append(f"  - unknown name {name!r}." + (f" Did you mean {close[0]!r}?" if close else ""))
        if len(unknown) > 20:
            lines.append(f"  - ... and {len(unknown) - 20} more unknown names")
        lines += [f"  - shape mismatch {m}" for m in mismatched]
        lines.append("Send the Hugging Face parameter names of this model (model.state_dict() of transformers).")
        raise ValueError("\n".join(lines))

    def _skyrl_reload_layers(self, named: list[tuple[str, torch.Tensor]]) -> None:
        copy = self._skyrl_shadow()
        for name, tensor in named:
            copy[name].copy_(tensor.detach())
        touched = {group_of(n) for n, _ in named}
        batch = [(n, t) for n, t in copy.items() if group_of(n) in touched]
        self.reload_weights(weights_iterator=iter(batch))
        self._skyrl_reprocess_tied(touched)

    def _skyrl_reprocess_tied(self, touched: set[str]) -> None:
        """Redo the kernel preparation of modules that share a reloaded weight but were not reloaded.

        With tied embeddings ``lm_head`` holds ``embed_tokens``' weight; the reloader updates the
        shared values but skips ``lm_head`` (nothing is loaded under its name), so the packed copy
        its CPU matmul was prepared with would keep the old weights.
        """
        from vllm.config import set_current_vllm_config

        owners: dict[int, list[tuple[str, torch.nn.Module]]] = {}
        for name, module in self.model_runner.model.named_modules(remove_duplicate=False):
            weight = module._parameters.get("weight")
            if weight is not None and getattr(module, "quant_method", None) is not None:
                owners.setdefault(id(weight), []).append((name, module))
        with set_current_vllm_config(self.vllm_config):
            for shared in owners.values():
                if len(shared) > 1 and any(name in touched for name, _ in shared):
                    for _, module in shared:
                        module.quant_method.process_weights_after_loading(module)


def describe(extension: Any) -> str:
    """The dotted path vLLM's ``worker_extension_cls`` takes for ``extension``."""
    return f"{extension.__module__}.{extension.__qualname__}"
