"""docs/writing_a_backend.md and docs/writing_a_strategy.md, the guides built around the platform package.

* A code block preceded by ``<!-- quote: PATH -->`` is a verbatim excerpt of the repository file
  ``PATH`` (consecutive lines, dedented together). Every Python and TOML block of the guides is
  such a quote, so the guides cannot drift from the package that CI builds, installs and trains
  with (tests/foundation/test_platform_package.py).
* Every member of the contract, and of each optional protocol the package implements, appears
  in a quote of its guide.
* Each guide's table of conformance tests lists exactly the tests of its suite.
* A text block preceded by ``<!-- message: ID -->`` quotes what the code prints: for
  ``contract-errors``, lines that tests/foundation/test_platform_package.py expects of the
  package's broken variants; every other ID is a failure of the strategy conformance suite,
  produced here by running the suite on a broken variant of ``tp_trainer`` (``…`` stands for
  text that varies).
* Both guides are in the site's nav, docs/index.md, the README's docs list and docs/plugins.md.

Comments are invisible in the rendered site.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import subprocess
import sys
import textwrap

import pytest
import yaml
from docs_support import DOCS, REPO, Block, blocks

from skyrl_core.api import (
    CONTRACTS,
    AbortsRequests,
    ChecksInstallation,
    EngineGroup,
    Kind,
    KnowsModelLength,
    ReportsWeights,
    ShardedWeightSource,
)
from skyrl_core.testing.conformance import BackendConformance
from skyrl_core.testing.strategy_conformance import StrategyConformance

BACKEND = "writing_a_backend.md"
STRATEGY = "writing_a_strategy.md"
GUIDES = (BACKEND, STRATEGY)
PLATFORM = REPO / "tests" / "fixtures" / "packages" / "platform"
_MARK = re.compile(r"^\s*<!--\s*(?P<kind>quote|message):\s*(?P<value>.*?)\s*-->\s*$")


def marked(page: str) -> list[tuple[Block, str | None, str | None]]:
    """``(block, kind, value)`` for every fenced block of ``page``; kind and value from the
    ``quote``/``message`` comment on the line before its fence (None when there is none)."""
    lines = (DOCS / page).read_text().splitlines()
    out = []
    for block in blocks(DOCS / page):
        j = block.line - 2
        while j >= 0 and not lines[j].strip():
            j -= 1
        m = _MARK.match(lines[j]) if j >= 0 else None
        out.append((block, m["kind"], m["value"]) if m else (block, None, None))
    return out


def quotes(page: str) -> list[tuple[Block, str]]:
    return [(b, value) for b, kind, value in marked(page) if kind == "quote"]


def is_excerpt(body: str, text: str) -> bool:
    """Whether ``body`` is consecutive lines of ``text`` with their common indentation removed."""
    want = body.rstrip("\n").split("\n")
    lines = text.split("\n")
    for i in range(len(lines) - len(want) + 1):
        if lines[i].strip() == want[0].strip():
            chunk = "\n".join(lines[i : i + len(want)])
            if textwrap.dedent(chunk).split("\n") == want:
                return True
    return False


def test_the_excerpt_matcher_is_not_trivially_true():
    text = "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n"
    assert is_excerpt("def f(self):\n    return 1\n", text)
    assert is_excerpt("class A:\n    def f(self):\n", text)
    assert not is_excerpt("def f(self):\n    return 2\n", text)
    assert not is_excerpt("def f(self):\n  return 1\n", text)
    assert not is_excerpt("def f(self):\n\ndef g(self):\n", text)


@pytest.mark.parametrize("page", GUIDES)
def test_every_code_block_is_a_quote_of_a_real_file(page):
    found = quotes(page)
    assert len(found) >= 10, f"docs/{page} quotes only {len(found)} blocks"
    for block, kind, _ in marked(page):
        if block.lang in ("python", "toml"):
            assert kind == "quote", f"{block.where}: a {block.lang} block must quote a file (<!-- quote: PATH -->)"
    for block, path in found:
        file = REPO / path
        assert file.is_file(), f"{block.where}: quotes {path}, which does not exist"
        assert is_excerpt(block.body, file.read_text()), (
            f"{block.where}: the quoted block is no longer in {path}; copy it from the file again"
        )


def _members(protocol: type) -> set[str]:
    names = {n for n in vars(protocol) if not n.startswith("_")}
    return names | set(vars(protocol).get("__annotations__", {}))


def _quoted_code(page: str) -> str:
    return "\n".join(b.body for b, _ in quotes(page))


@pytest.mark.parametrize(
    ("page", "kind", "protocols"),
    [
        (BACKEND, Kind.BACKEND, (AbortsRequests, ChecksInstallation, EngineGroup, KnowsModelLength, ReportsWeights)),
        (STRATEGY, Kind.STRATEGY, (ShardedWeightSource,)),
    ],
)
def test_every_member_is_shown(page, kind, protocols):
    code = _quoted_code(page)
    contract = CONTRACTS[kind]
    for name in contract.methods:
        assert re.search(rf"\bdef {name}\(", code), f"docs/{page} quotes no `def {name}(`"
    assert re.search(r"\bdef __init__\(", code), f"docs/{page} does not show the constructor"
    for name in contract.attributes:
        assert name in code, f"docs/{page} does not show the attribute {name}"
    for protocol in protocols:
        for name in _members(protocol):
            assert re.search(rf"\bdef {name}\(|\b{name}: ", code), (
                f"docs/{page} does not show {protocol.__name__}.{name}"
            )


def _table_tests(page: str) -> list[str]:
    return re.findall(r"^\| `(test_\w+)` \|", (DOCS / page).read_text(), flags=re.MULTILINE)


@pytest.mark.parametrize(("page", "suite"), [(BACKEND, BackendConformance), (STRATEGY, StrategyConformance)])
def test_the_conformance_table_lists_every_test(page, suite):
    listed = _table_tests(page)
    tests = [n for n in vars(suite) if n.startswith("test_")]
    assert sorted(listed) == sorted(tests), f"docs/{page}: the table differs from {suite.__name__}'s tests"
    assert len(set(listed)) == len(listed), f"docs/{page} lists a test twice"


def _messages(page: str) -> dict[str, str]:
    return {value: b.body.strip() for b, kind, value in marked(page) if kind == "message"}


def _platform_test_module():
    spec = importlib.util.spec_from_file_location("platform_test", REPO / "tests/foundation/test_platform_package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", GUIDES)
def test_quoted_contract_errors_are_what_the_broken_variants_print(page):
    expected = {error for _, _, error in _platform_test_module().VARIANTS.values()}
    lines = _messages(page)["contract-errors"].splitlines()
    assert lines
    for line in lines:
        assert line.startswith("error: ") and line[len("error: ") :] in expected, (
            f"docs/{page}: {line!r} is not a line tests/foundation/test_platform_package.py checks"
        )


#: Broken variants of tp_trainer: message id -> (the conformance test that fails, the broken methods).
BROKEN = {
    "forward-temperature": (
        "test_forward_matches_teacher_forced_transformers[0.7]",
        """
        def forward(self, batch, *, role="policy", temperature=1.0, need_entropy=False):
            return super().forward(batch, role=role, temperature=1.0, need_entropy=need_entropy)
        """,
    ),
    "one-micro-batch": (
        "test_train_step_gives_the_loss_fn_micro_batches_and_mini_batch_totals",
        """
        def __init__(self, config, *, trainer, **kwargs):
            super().__init__(config, trainer=attrs.evolve(trainer, micro_batch_tokens=1 << 30), **kwargs)
        """,
    ),
    "tied-twice": (
        "test_named_weights_are_every_tensor_once_by_hugging_face_name",
        """
        def _tensors(self):
            return {name: tensor.detach() for name, tensor in self.model.state_dict().items()}
        """,
    ),
    "schedule-not-restored": (
        "test_checkpoint_round_trip_continues_exactly",
        """
        def load_checkpoint(self, path):
            state = torch.load(Path(path) / "tp.pt")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        """,
    ),
    "ref-accepted": (
        "test_reference_model_stays_the_initial_policy",
        """
        def __init__(self, config, *, need_ref=False, **kwargs):
            super().__init__(config, **kwargs)
        """,
    ),
}

HEADER = f"""
import sys
from pathlib import Path

import attrs
import torch

sys.path.insert(0, {str(PLATFORM)!r})
from skyrl_core.testing.strategy_conformance import StrategyConformance
from skyrl_test_platform.config import TrainerOptions
from skyrl_test_platform.trainer import Trainer
"""


def appears(quote: str, output: str) -> bool:
    """Whether ``quote`` appears in ``output``; ``…`` matches any text (pieces in order)."""
    flat = " ".join(output.split())
    position = 0
    for piece in (" ".join(p.split()) for p in quote.split("…")):
        found = flat.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


@pytest.mark.slow
def test_quoted_conformance_failures_are_what_the_suite_prints(tmp_path):
    messages = {k: v for k, v in _messages(STRATEGY).items() if k != "contract-errors"}
    assert set(messages) == set(BROKEN), "every quoted failure needs a broken variant here (and back)"
    parts, nodes = [HEADER], []
    for key, (test, methods) in BROKEN.items():
        name = key.replace("-", "_")
        parts.append(f"\nclass Broken_{name}(Trainer):\n{textwrap.indent(textwrap.dedent(methods), '    ')}")
        parts.append(
            f"\nclass Test_{name}(StrategyConformance):\n    has_ref = False\n    has_critic = False\n\n"
            f"    def make_strategy(self, model, trainer, **flags):\n"
            f"        return Broken_{name}(TrainerOptions(), model=model, trainer=trainer, **flags)\n"
        )
        nodes.append(f"test_broken.py::Test_{name}::{test}")
    (tmp_path / "test_broken.py").write_text("\n".join(parts))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *nodes],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert f"{len(BROKEN)} failed" in output, output[-3000:]
    for key, quote in messages.items():
        assert appears(quote, output), (
            f"docs/{STRATEGY} ({key}) quotes\n{quote}\nbut the suite printed\n{output[-4000:]}"
        )


def test_the_appears_matcher_is_not_trivially_true():
    assert appears("a … c", "a b c") and not appears("a … c", "c b a") and not appears("x", "a b c")


def test_the_guides_are_linked_everywhere():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())

    def flatten(items):
        for item in items:
            if isinstance(item, dict):
                for value in item.values():
                    yield from flatten(value) if isinstance(value, list) else [value]
            else:
                yield item

    nav = set(flatten(config["nav"]))
    assert {p.name for p in DOCS.glob("*.md")} <= nav, "every page of docs/ belongs in mkdocs.yml's nav"
    index = (DOCS / "index.md").read_text()
    readme = (REPO / "README.md").read_text()
    plugins = (DOCS / "plugins.md").read_text()
    for page in GUIDES:
        assert f"]({page})" in index, f"docs/index.md does not link {page}"
        assert f"](docs/{page})" in readme, f"README.md does not link docs/{page}"
        assert f"]({page})" in plugins, f"docs/plugins.md does not link {page}"


def test_the_strategy_conformance_example_of_plugins_md_matches_the_suite():
    (body,) = [b.body for b in blocks(DOCS / "plugins.md") if b.lang == "python" and "StrategyConformance)" in b.body]
    (cls,) = [n for n in ast.parse(body).body if isinstance(n, ast.ClassDef)]
    members = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    members |= {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    for name in members:
        assert hasattr(StrategyConformance, name), f"docs/plugins.md overrides unknown member {name!r}"
    make = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "make_strategy")
    documented = [a.arg for a in make.args.args] + [f"**{make.args.kwarg.arg}" if make.args.kwarg else ""]
    suite = inspect.signature(StrategyConformance.make_strategy).parameters
    assert documented == [n if p.kind is not p.VAR_KEYWORD else f"**{n}" for n, p in suite.items()]
