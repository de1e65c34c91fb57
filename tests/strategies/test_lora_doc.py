"""docs/lora.md: its TOML validates, its table lists every [model.lora] option with its default,
its `skyrl export` command parses, and its Python snippet loads a real exported adapter."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import attrs
import pytest

from skyrl_core.config.loader import parse_config
from skyrl_core.config.render import _toml_value
from skyrl_core.config.schema import LoraConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
TEXT = (REPO / "docs" / "lora.md").read_text(encoding="utf-8")
TOML = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)
BASH = re.findall(r"```bash\n(.*?)```", TEXT, flags=re.DOTALL)
PYTHON = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(TOML)))
def test_toml_snippets_validate(index: int) -> None:
    raw = tomllib.loads(TOML[index])
    raw.setdefault("model", {}).setdefault("path", "m")
    cfg = parse_config(raw, source=f"docs/lora.md snippet {index + 1}")
    for key, value in raw["model"].get("lora", {}).items():
        assert getattr(cfg.model.lora, key) == value
    assert len(TOML) >= 3


def test_every_option_is_in_the_table_with_its_default() -> None:
    for field in attrs.fields(LoraConfig):
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
        row = f"| `{field.name}` | `{_toml_value(default)}` |"
        assert row in TEXT, row


def test_export_command_parses_and_loads_its_config() -> None:
    from skyrl_core.cli import build_parser
    from skyrl_core.config.loader import load_config

    (command,) = [line for block in BASH for line in block.splitlines() if line.startswith("skyrl export")]
    args, extra = build_parser().parse_known_args(shlex.split(command)[1:])
    overrides = [*getattr(args, "overrides", []), *extra]
    cfg = load_config(str(REPO / args.file), overrides)
    assert cfg.model.lora.export == "adapter" and cfg.model.lora.rank > 0
    assert args.out == "runs/lora-smoke/adapter"


def test_python_snippet_loads_an_exported_adapter(qwen2_dir, tmp_path, make_strategy, make_batch, pg_loss) -> None:
    pytest.importorskip("peft")
    import torch

    strategy = make_strategy(qwen2_dir, lr=5e-2, model_kw={"lora": LoraConfig(rank=4, export="adapter")})
    strategy.train_step(make_batch(0), pg_loss)
    strategy.export_hf(tmp_path / "adapter", tokenizer=None)
    (snippet,) = [block for block in PYTHON if "PeftModel" in block]
    namespace = {"base_dir": str(qwen2_dir), "adapter_dir": str(tmp_path / "adapter")}
    exec(compile(snippet, "docs/lora.md", "exec"), namespace)
    merged = namespace["merged"]
    assert not any("lora" in name for name in merged.state_dict())
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, strategy.policy(ids).logits, atol=1e-5, rtol=1e-5)


def test_backend_method_matches_the_protocol() -> None:
    import inspect

    from skyrl_core.api import LoadsLoraAdapters

    (block,) = [block for block in PYTHON if "def load_lora_adapter" in block]
    documented = re.search(r"def load_lora_adapter\((.*?)\)", block).group(1)
    params = list(inspect.signature(LoadsLoraAdapters.load_lora_adapter).parameters)
    assert [p.split(":")[0].strip() for p in documented.split(",")] == params
