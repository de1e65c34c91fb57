"""Every shell command in docs/ is validated: its program, files, options and configs exist.

The pages' own tests (tests/docs/test_docs_tutorial.py, test_docs_quickstart.py,
test_docs_custom_env.py, tests/data/test_data_doc.py, ...) also *run* the commands that are
cheap enough; this test checks every command of every page without running anything
heavy:

* ``skyrl ...``: the arguments parse with the real ``skyrl`` parser (plugins' commands
  included); a config file (in the repository, or a ``# NAME`` TOML block of the same page)
  loads with its overrides; a dataset preparer exists and accepts the options; a component
  kind exists;
* ``pip install``: local paths exist and their extras are declared; skyrl distributions'
  extras are declared;
* ``bash FILE``, ``pytest PATH``, ``python FILE``: the files exist;
* anything else must sit in a block marked ``<!-- test: skip (reason) -->``.

Environment assignments in front of a command must name variables documented in
docs/environment_variables.md or variables of the tools the command runs (listed below).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
from pathlib import Path

import pytest
import tomllib
from docs_support import DOCS, REPO, SHELL_LANGS, Command, all_blocks, blocks, commands

from skyrl_core.cli import _parse_kind, build_parser
from skyrl_core.config.loader import apply_overrides, load_config, parse_config, structure
from skyrl_core.plugins import build_registry
from skyrl_core.prepare import parse_options
from skyrl_core.specs import Kind

SHELL_BLOCKS = [b for b in all_blocks() if b.lang in SHELL_LANGS]
COMMANDS = [c for b in SHELL_BLOCKS if not b.skipped for c in commands(b)]
SKIP_REASON = re.compile(r"^skip \(.{8,}\)$")
# Variables of other programs that a documented command sets for that program.
FOREIGN_VARIABLES = {"VLLM_SERVER_DEV_MODE", "CUDA_VISIBLE_DEVICES", "PIP_EXTRA_INDEX_URL", "NCCL_SOCKET_IFNAME"}
OUR_DISTRIBUTIONS = {
    tomllib.loads(p.read_text())["project"]["name"]: p.parent
    for p in [REPO / "pyproject.toml", *REPO.glob("skyrl_*/pyproject.toml"), *REPO.glob("plugins/*/pyproject.toml")]
}


@pytest.fixture(scope="module")
def registry():
    """Installed plugins plus the example packages of docs/examples (imported from source)."""
    extra = []
    installed = {p.distribution for p in build_registry().plugins}
    for pyproject in sorted(DOCS.glob("examples/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        sys.path.insert(0, str(pyproject.parent))
        if project["name"] in installed:
            continue
        for value in project["entry-points"]["skyrl"].values():
            extra.append((project["name"], importlib.import_module(value)))
    registry = build_registry(extra_plugins=extra)
    assert registry.conflicts == [], registry.conflicts
    yield registry
    for pyproject in DOCS.glob("examples/*/pyproject.toml"):
        sys.path.remove(str(pyproject.parent))


def documented_variables() -> set[str]:
    text = (DOCS / "environment_variables.md").read_text()
    return set(re.findall(r"`([A-Z][A-Z0-9_]*)`", text))


def test_there_are_commands_to_check():
    assert len(COMMANDS) > 40


def test_skip_markers_give_a_reason():
    for block in all_blocks():
        if block.marker and not block.marker.startswith(("error ", "file ")):
            hint = f"{block.where}: write <!-- test: skip (why) -->, got {block.marker!r}"
            assert SKIP_REASON.match(block.marker), hint


def _extras(project_dir: Path) -> set[str]:
    return set(tomllib.loads((project_dir / "pyproject.toml").read_text())["project"].get("optional-dependencies", {}))


def check_pip(cmd: Command) -> None:
    assert cmd.argv[:2] == ["pip", "install"], cmd.text
    for arg in cmd.argv[2:]:
        if arg.startswith("-"):
            continue
        name, _, extras = arg.partition("[")
        wanted = set(extras.rstrip("]").split(",")) - {""} if extras else set()
        if name.startswith((".", "/")):
            project = (REPO / name).resolve()
            assert (project / "pyproject.toml").is_file(), f"{cmd.text}: {name} is not a project folder"
            assert wanted <= _extras(project), f"{cmd.text}: extras {wanted - _extras(project)} are not declared"
        elif name in OUR_DISTRIBUTIONS:
            project = OUR_DISTRIBUTIONS[name]
            assert wanted <= _extras(project), f"{cmd.text}: extras {wanted - _extras(project)} are not declared"
        # Any other name is a package of another project (sglang, gguf, ...), not ours to check.


def _config_text(cmd: Command, file: str) -> tuple[str, str]:
    """The config a command names: a repository file, or a ``# file`` TOML block of the same page."""
    path = REPO / file
    if path.is_file():
        return path.read_text(), str(path)
    named = [b for b in blocks(DOCS / cmd.block.page) if b.lang == "toml" and b.body.startswith(f"# {file}\n")]
    assert named, f"{cmd.block.where}: `{cmd.text}` names {file}, which is neither in the repository nor a TOML block"
    return named[0].body, f"{cmd.block.where} ({file})"


def check_skyrl(cmd: Command, registry) -> None:
    argv = cmd.argv[1:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args, extra = build_parser(registry).parse_known_args(argv)
    except SystemExit as exc:
        if exc.code == 0 and ("--help" in argv or "-h" in argv or "--version" in argv):
            return
        raise AssertionError(f"{cmd.block.where}: `{cmd.text}` does not parse: {err.getvalue()}") from None
    if extra:
        assert getattr(args, "takes_options", False), f"{cmd.block.where}: `{cmd.text}`: unknown arguments {extra}"
    command = args.command
    if command in ("train", "eval", "sft", "export") or getattr(args, "config_command", None) in ("validate", "show"):
        text, source = _config_text(cmd, args.file)
        if Path(args.file).suffix == ".toml" and (REPO / args.file).is_file():
            load_config(REPO / args.file, args.overrides, registry)
        else:
            raw = tomllib.loads(text)
            apply_overrides(raw, args.overrides)
            parse_config(raw, registry, source=source)
    elif command == "components" and args.kind:
        _parse_kind(args.kind)
    elif command == "data" and args.data_command == "prepare":
        comp = registry.get(Kind.DATASET_PREPARER, args.name)
        options = parse_options(extra)
        if comp.spec.config_cls is not None:
            _, issues = structure(options, comp.spec.config_cls, ())
            assert not issues, f"{cmd.block.where}: `{cmd.text}`: {[str(i) for i in issues]}"
        else:
            assert not options, f"{cmd.block.where}: `{cmd.text}`: {args.name} takes no options"


def check_files(cmd: Command) -> None:
    program = cmd.argv[0]
    paths = [a for a in cmd.argv[1:] if not a.startswith("-")]
    if program == "bash":
        assert (REPO / paths[0]).is_file(), f"{cmd.block.where}: no script {paths[0]}"
    elif program == "pytest":
        for p in paths:
            assert (REPO / p.split("::")[0]).exists(), f"{cmd.block.where}: no test path {p}"
    elif program in ("python", "python3") and paths and paths[0].endswith(".py"):
        assert (REPO / paths[0]).is_file(), f"{cmd.block.where}: no file {paths[0]}"
    else:
        raise AssertionError(
            f"{cmd.block.where}: no rule validates `{cmd.text}`; add one to this test or mark the block "
            "<!-- test: skip (reason) -->"
        )


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: f"{c.block.where}:{c.text[:60]}")
def test_command_is_valid(cmd: Command, registry, monkeypatch):
    monkeypatch.chdir(REPO)
    allowed = documented_variables() | FOREIGN_VARIABLES
    assert set(cmd.env) <= allowed, f"{cmd.block.where}: undocumented variables {set(cmd.env) - allowed}"
    program = Path(cmd.argv[0]).name  # .venv-vllm/bin/skyrl is skyrl too
    if program == "skyrl":
        check_skyrl(cmd, registry)
    elif program == "pip":
        check_pip(cmd)
    else:
        check_files(cmd)


def test_the_vocabulary_of_commands_is_small():
    """A new kind of command needs a rule here or a skip marker, never silence."""
    programs = {Path(c.argv[0]).name for c in COMMANDS}
    assert programs <= {"skyrl", "pip", "bash", "pytest", "python", "python3"}, programs
    assert sys.executable  # the checks above ran in this interpreter's environment


def test_the_readme_lists_real_commands(registry):
    """README.md's command overview names sub-commands that exist, and every built-in one."""
    code = "".join(re.findall(r"^```bash\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.MULTILINE | re.DOTALL))
    listed = re.findall(r"^skyrl ([a-z-]+(?: [a-z-]+)?)", code, flags=re.MULTILINE)
    parser = build_parser(registry)
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    builtin = {"train", "eval", "sft", "export", "data", "plugins", "components", "config", "doctor"}
    assert builtin <= {c.split()[0] for c in listed}, listed
    for command in listed:
        name, _, action = command.partition(" ")
        assert name in sub.choices, f"README.md lists `skyrl {command}`, which does not exist"
        nested = [a for a in sub.choices[name]._actions if a.dest in ("config_command", "data_command")]
        if nested and action and action.isalpha():
            assert action in nested[0].choices, f"README.md lists `skyrl {command}`, which does not exist"
