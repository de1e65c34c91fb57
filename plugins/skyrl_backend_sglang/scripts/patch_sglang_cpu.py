"""Make two optional imports of the installed SGLang optional, for a CPU-only torch (test venvs only).

1. ``torchvision``: imported at module level by a few ``sglang/srt`` modules for image
   preprocessing. PyPI's torchvision is a CUDA build that fails beside torch 2.13.0+cpu, so
   those import lines are wrapped in ``try/except ImportError``.
2. ``from vllm._custom_ops import rotary_embedding`` in ``RotaryEmbedding.__init__``: a
   fallback kernel that the CPU path never calls (``forward`` goes to ``forward_native``),
   so a missing vllm is tolerated.

The plugin itself does not rely on these edits; they only let SGLang import on this kind of
machine. Idempotent: a second run changes nothing. Run with the venv's python.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

MARK = "# skyrl cpu venv: optional import"
TORCHVISION = re.compile(r"^(import torchvision\S*( as \w+)?|from torchvision\S* import [^(]+)$")  # module level
VLLM = "from vllm._custom_ops import rotary_embedding"


def main() -> int:
    spec = importlib.util.find_spec("sglang")  # found without importing it (that is what fails)
    if spec is None or spec.origin is None:
        print("sglang is not installed in this interpreter", file=sys.stderr)
        return 1
    srt = Path(spec.origin).parent / "srt"
    changed = 0
    for path in sorted(srt.rglob("*.py")):
        text = path.read_text()
        if "torchvision" not in text and VLLM not in text:
            continue
        lines, out, touched = text.split("\n"), [], False
        for i, line in enumerate(lines):
            previous = lines[i - 1] if i else ""
            match = TORCHVISION.match(line)
            is_vllm = line.strip() == VLLM
            if (match or is_vllm) and not previous.strip().startswith("try:"):  # idempotent
                indent = re.match(r"\s*", line).group(0)
                fallback = f"{indent}    rotary_embedding = None" if is_vllm else f"{indent}    pass"
                out += [f"{indent}try:  {MARK}", f"    {line}", f"{indent}except ImportError:", fallback]
                touched = True
            else:
                out.append(line)
        if touched:
            path.write_text("\n".join(out))
            changed += 1
            print(f"patched {path.relative_to(srt.parent)}")
    print(f"{changed} files patched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
