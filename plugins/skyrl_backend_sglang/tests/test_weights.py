"""Weight sync into a real SGLang CPU engine, verified by reading the weights back (checksums).

A tiny Llama model (SGLang 0.5.20 implements ``get_weights_by_name`` for Llama, not for
Qwen2). New weights are pushed with each transport the engine supports here ('tensor':
update_weights_from_tensor inside begin/end_weight_update where present, and 'disk':
safetensors + update_weights_from_disk), read back tensor by tensor, and compared by
checksum with what was sent; the core's ``[runtime] verify_weights`` check is the same
code path. Generation must change with the weights and come back with them.
"""

from __future__ import annotations

import pytest
from conftest import needs_sglang

pytestmark = needs_sglang


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    from skyrl_core.api import TinyModelConfig, build_tiny_model
    from skyrl_core.testing.conformance import make_unit_scale_copy

    base = build_tiny_model(tmp_path_factory.mktemp("llama") / "model",
                            TinyModelConfig(arch="llama", hidden_size=64, layers=2, heads=4, kv_heads=2,
                                            intermediate_size=128))
    return make_unit_scale_copy(base, tmp_path_factory.mktemp("llama-unit") / "model")


@pytest.fixture(scope="module")
def backend(llama_dir):
    from skyrl_backend_sglang.backend import SGLangBackend
    from skyrl_backend_sglang.config import SGLangBackendConfig

    from skyrl_core.api import ModelConfig

    b = SGLangBackend(SGLangBackendConfig(), model=ModelConfig(path=str(llama_dir), device="cpu"), seed=0)
    yield b
    b.shutdown()


def _state(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _greedy(backend, prompt):
    from skyrl_core.api import GenerateRequest, SamplingParams
    from skyrl_core.testing.conformance import generate

    (result,) = generate(backend, [GenerateRequest(prompt, SamplingParams(max_new_tokens=12, temperature=0))])
    return result.completions[0]


@pytest.mark.parametrize("transport", ["tensor", "disk"])
def test_round_trip_checksums(backend, llama_dir, transport):
    import torch

    from skyrl_core.api import compare_checksums, expected_checksums

    original = _state(llama_dir)
    prompt = backend.tokenizer("What is 2 + 3?", add_special_tokens=False)["input_ids"]
    before = _greedy(backend, prompt)

    gen = torch.Generator().manual_seed(1 if transport == "tensor" else 2)
    perturbed = {n: t + torch.randn(t.shape, generator=gen) * t.std() if t.dim() == 2 else t
                 for n, t in original.items()}
    backend.weights.transport = transport
    backend.update_weights(perturbed.items())
    backend.reset_prefix_cache()
    expected = expected_checksums(perturbed.items(), backend.weight_dtypes())
    ((engine, held),) = backend.weight_checksums(list(expected))
    assert set(held) == set(expected) == set(original)
    compare_checksums(expected, held, engine=engine, transport=transport)  # raises naming any mismatch
    assert _greedy(backend, prompt).token_ids != before.token_ids

    backend.update_weights(original.items())
    backend.reset_prefix_cache()
    ((_, held),) = backend.weight_checksums(list(expected))
    compare_checksums(expected_checksums(original.items(), backend.weight_dtypes()), held, engine=engine,
                      transport=transport)
    again = _greedy(backend, prompt)
    assert again.token_ids == before.token_ids
    assert max(abs(a - b) for a, b in zip(again.logprobs, before.logprobs, strict=True)) < 1e-6


def test_checksums_catch_a_stale_engine(backend, llama_dir):
    import torch

    from skyrl_core.api import WeightSyncError, compare_checksums, expected_checksums

    original = _state(llama_dir)
    name = "model.layers.0.self_attn.k_proj.weight"  # fused into qkv_proj inside SGLang
    changed = {name: original[name] + 1.0}
    ((engine, held),) = backend.weight_checksums([name])  # the engine still holds the original
    with pytest.raises(WeightSyncError, match="k_proj"):
        compare_checksums(expected_checksums(changed.items(), backend.weight_dtypes()), held, engine=engine,
                          transport="none")
    assert torch.equal(original[name], _state(llama_dir)[name])


def test_unknown_and_misshaped_names_are_reported_together(backend, llama_dir):
    import torch

    good = _state(llama_dir)
    with pytest.raises(ValueError) as info:
        backend.update_weights([
            ("model.layers.0.mlp.up_proj.weight", good["model.layers.0.mlp.up_proj.weight"]),
            ("model.layers.0.mlp.upp_proj.weight", torch.zeros(2)),
            ("model.norm.weight", torch.zeros(3)),
        ])
    text = str(info.value)
    assert "1 tensors sent" in text and "upp_proj" in text
    assert "Did you mean 'model.layers.0.mlp.up_proj.weight'" in text
    assert "shape mismatch model.norm.weight" in text


def test_rejected_update_raises_with_sglangs_message(backend):
    """SGLang reports failures through a success flag, not an exception: the backend must check it."""
    import torch

    class Refusing:
        remote = False

        def update_weights_from_tensor(self, named):
            return False, "update_weights_from_tensor must run between begin_weight_update() and end_weight_update()"

    real, backend.weights.transport = backend.client, "tensor"
    backend.client = Refusing()  # test double for a refusing engine (a real one cannot be made to refuse on demand)
    try:
        with pytest.raises(RuntimeError, match="begin_weight_update"):
            backend.update_weights([("model.norm.weight", torch.ones(64))])
    finally:
        backend.client = real


class RecordingClient:
    """Test double of an SGLang client whose memory release drops the weights (SGLang's memory saver
    needs a GPU, so a real release is a no-op here). It records what reaches it."""

    remote = False

    def __init__(self):
        self.calls = []

    def update_weights_from_tensor(self, named):
        self.calls.append(("tensor", [n for n, _ in named]))
        return True, ""

    def update_weights_from_disk(self, path):
        self.calls.append(("disk", path))
        return True, ""


def test_release_that_drops_weights_resyncs_on_wake(llama_dir):
    """With enable_memory_saver, updates while asleep are held and pushed by wake; never-synced engines reload
    the checkpoint."""
    import types

    from skyrl_backend_sglang.config import SGLangBackendConfig
    from skyrl_backend_sglang.weights import WeightSync

    client = RecordingClient()
    owner = types.SimpleNamespace(client=client, device="cuda", version="test",
                                  args={"enable_memory_saver": True, "dtype": "bfloat16"})
    sync = WeightSync(owner, SGLangBackendConfig(), llama_dir, {"tie_word_embeddings": True})
    assert sync.drops_weights and sync.transport == "tensor"

    sync.after_resume()  # nothing synced yet: the checkpoint's own weights come back from disk
    assert client.calls == [("disk", str(llama_dir))]

    state = _state(llama_dir)
    sync.update(list(state.items())[:3], asleep=False)  # awake: sent at once, and a CPU copy is held
    sync.update(list(state.items())[3:5], asleep=True)  # asleep: held only
    assert [c[0] for c in client.calls] == ["disk", "tensor"]
    sync.after_resume()
    assert client.calls[-1] == ("tensor", list(state)[:5])  # everything synced so far, once more
