"""A short summary of a ``torch.profiler`` trace: the top kernels and where the time went.

Both strategies' passes can be wrapped in ``torch.profiler.profile``; ``summarize`` turns the
trace into plain data (JSON-ready) that a benchmark prints and records: the ``top`` kernels by
self time, and the shares of communication (NCCL/gloo collectives), copies (memcpy, memset,
dtype casts, FSDP2's copy-in/copy-out) and compute. On CUDA the device kernels are counted; on
CPU the operators' self CPU time.
"""

from __future__ import annotations

from typing import Any

COMM = ("nccl", "all_gather", "allgather", "reduce_scatter", "reducescatter", "all_reduce", "allreduce",
        "broadcast", "c10d", "gloo")
COPY = ("copy", "memcpy", "memset", "chunk_cat", "fill_", "aten::cat")  # copy: memcpy, copy_, _to_copy, *BatchedCopy


def category(name: str) -> str:
    """``comm``, ``copy`` or ``compute`` for a kernel or operator name."""
    low = name.lower()
    if any(k in low for k in COMM):
        return "comm"
    if any(k in low for k in COPY):
        return "copy"
    return "compute"


def start(cuda: bool) -> Any:
    """A started ``torch.profiler.profile`` (CPU, and CUDA when ``cuda``)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    prof = profile(activities=activities)
    prof.__enter__()
    return prof


def stop(prof: Any, top: int = 15) -> dict[str, Any]:
    """Stop ``start``'s profiler and ``summarize`` it."""
    prof.__exit__(None, None, None)
    return summarize(prof, top)


def summarize(prof: Any, top: int = 15) -> dict[str, Any]:
    """``{"device", "total_ms", "shares": {comm, copy, compute}, "top": [{name, ms, share, category}]}``."""
    from torch.autograd import DeviceType

    events = prof.key_averages()
    on_device = [e for e in events if e.device_type == DeviceType.CUDA]
    if on_device:
        device, timed = "cuda", [(e.key, e.self_device_time_total) for e in on_device]
    else:
        device, timed = "cpu", [(e.key, e.self_cpu_time_total) for e in events]
    timed = [(name, us) for name, us in timed if us > 0]
    total = sum(us for _, us in timed) or 1.0
    shares = {"comm": 0.0, "copy": 0.0, "compute": 0.0}
    for name, us in timed:
        shares[category(name)] += us / total
    ranked = sorted(timed, key=lambda item: -item[1])[:top]
    return {
        "device": device,
        "total_ms": total / 1000.0,
        "shares": {k: round(v, 4) for k, v in shares.items()},
        "top": [
            {"name": name[:120], "ms": round(us / 1000.0, 3), "share": round(us / total, 4), "category": category(name)}
            for name, us in ranked
        ],
    }


def render(summary: dict[str, Any], title: str) -> str:
    """The summary as a few lines of text."""
    s = summary["shares"]
    lines = [
        f"{title}: {summary['total_ms']:.1f} ms of {summary['device']} time; compute {s['compute']:.1%}, "
        f"copies {s['copy']:.1%}, communication {s['comm']:.1%}"
    ]
    for row in summary["top"]:
        lines.append(f"  {row['share']:6.1%} {row['ms']:9.2f} ms  [{row['category']}] {row['name']}")
    return "\n".join(lines)
