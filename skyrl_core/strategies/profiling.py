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
    """``{"device", "total_ms", "shares": {comm, copy, compute}, "top": [{name, ms, share, category}]}``;
    on CUDA also ``launches`` (device kernels and copies run) and ``host_top``/``host_ms``: the
    operators by self CPU time, which show a step that is bound by launching rather than by the GPU.
    ``record_function`` ranges (user annotations, e.g. ``Optimizer.step``) are not device work and
    are left out of the device totals."""
    from torch.autograd import DeviceType

    events = prof.key_averages()
    on_device = [e for e in events if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]
    extra: dict[str, Any] = {}
    if on_device:
        device, timed = "cuda", [(e.key, e.self_device_time_total) for e in on_device]
        host = [(e.key, e.self_cpu_time_total, e.count) for e in events
                if e.device_type == DeviceType.CPU and e.self_cpu_time_total > 0]
        extra = {
            "launches": sum(e.count for e in on_device),
            "host_ms": sum(us for _, us, _ in host) / 1000.0,
            "host_top": [{"name": name[:120], "ms": round(us / 1000.0, 3), "calls": n}
                         for name, us, n in sorted(host, key=lambda item: -item[1])[:top]],
        }
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
        **extra,
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
    if "host_top" in summary:
        lines.append(f"  {summary['launches']} device launches; host operators {summary['host_ms']:.1f} ms "
                     "self CPU time:")
        for row in summary["host_top"]:
            lines.append(f"  {row['ms']:9.2f} ms {row['calls']:6d} calls  {row['name']}")
    return "\n".join(lines)


def diff(a: dict[str, Any], b: dict[str, Any], top: int = 20) -> list[dict[str, Any]]:
    """Kernels whose time differs most between two summaries (``b`` minus ``a``, by name, over the
    ``top`` lists both kept): where one strategy spends device time the other does not."""
    ms_a = {row["name"]: row["ms"] for row in a["top"]}
    ms_b = {row["name"]: row["ms"] for row in b["top"]}
    names = set(ms_a) | set(ms_b)
    rows = [{"name": n, "a_ms": ms_a.get(n, 0.0), "b_ms": ms_b.get(n, 0.0),
             "delta_ms": round(ms_b.get(n, 0.0) - ms_a.get(n, 0.0), 3)} for n in names]
    return sorted(rows, key=lambda r: -abs(r["delta_ms"]))[:top]
