"""``strategies.profiling``: a torch profiler trace summarised into top kernels and time shares."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.strategies import profiling


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ncclDevKernel_AllGather_RING_LL", "comm"),
        ("c10d::reduce_scatter_tensor_coalesced_", "comm"),
        ("Memcpy DtoD (Device -> Device)", "copy"),
        ("aten::_to_copy", "copy"),
        ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<...>", "copy"),
        ("aten::cat", "copy"),
        ("sm90_xmma_gemm_bf16bf16_bf16f32", "compute"),
        ("aten::scatter_add_", "compute"),
    ],
)
def test_categories(name, expected) -> None:
    assert profiling.category(name) == expected


def test_summary_of_a_real_trace() -> None:
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    prof = profiling.start(cuda=False)
    for _ in range(5):
        c = (a @ b).to(torch.float64).sum()
    summary = profiling.stop(prof, top=3)
    assert float(c) == float(c)  # computed
    assert summary["device"] == "cpu" and summary["total_ms"] > 0
    assert sum(summary["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert summary["shares"]["copy"] > 0  # the float64 casts
    names = [row["name"] for row in summary["top"]]
    assert len(names) == 3 and "aten::mm" in names
    text = profiling.render(summary, "matmuls")
    assert text.startswith("matmuls: ") and "aten::mm" in text


def test_diff_ranks_the_kernels_by_how_much_their_time_changed() -> None:
    a = {"top": [{"name": "gemm", "ms": 10.0}, {"name": "cast", "ms": 2.0}]}
    b = {"top": [{"name": "gemm", "ms": 10.5}, {"name": "accumulate", "ms": 4.0}]}
    rows = profiling.diff(a, b, top=2)
    assert [r["name"] for r in rows] == ["accumulate", "cast"]
    assert rows[0] == {"name": "accumulate", "a_ms": 0.0, "b_ms": 4.0, "delta_ms": 4.0}
    assert rows[1]["delta_ms"] == -2.0
