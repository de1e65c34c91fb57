"""Reading docs/*.md for the doc tests: fenced blocks, their test markers, shell commands.

A fenced block may be preceded (on the line right before its fence, blank lines allowed) by
an HTML comment that tells the tests what to do with it:

* ``<!-- test: skip (reason) -->``: the block is neither run nor validated; the reason is
  required and says why (e.g. it needs a GPU).
* ``<!-- error: ID -->`` (troubleshooting): the block quotes an error message; the scenario
  ``ID`` in ``test_docs_troubleshooting.py`` triggers it and checks that the text appears.
* ``<!-- file: PATH -->``: the block is the whole content of that file of an example package
  (docs/examples/...); ``test_docs_custom_env.py`` checks that they are equal.

Comments are invisible in the rendered site.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SHELL_LANGS = ("bash", "sh", "shell", "console")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>test|error|file):\s*(?P<text>.*?)\s*-->\s*$")


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    page: str  # relative to docs/, e.g. "quickstart.md"
    line: int  # 1-based line of the opening fence
    lang: str  # first word of the info string ("toml", "bash", ...), "" when none
    info: str  # the rest of the info string (e.g. "pyproject")
    body: str  # dedented content, ending with a newline
    marker: str | None = None  # "skip (reason)", "error ID", "file PATH", or None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"

    @property
    def skipped(self) -> bool:
        return self.marker is not None and self.marker.startswith("skip")


def pages() -> list[Path]:
    """Every Markdown page of docs/ (example packages' files excluded)."""
    return sorted(p for p in DOCS.rglob("*.md") if "examples" not in p.relative_to(DOCS).parts)


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one page, in order, with the marker comment before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        marker = None
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and (mm := _MARKER.match(lines[j])):
            marker = f"{mm['kind'] + ' ' if mm['kind'] != 'test' else ''}{mm['text']}"
        lang, _, rest = info.partition(" ")
        out.append(
            Block(
                page=str(path.relative_to(DOCS)),
                line=start + 1,
                lang=lang,
                info=rest.strip(),
                body=textwrap.dedent("\n".join(body)) + "\n",
                marker=marker,
            )
        )
    return out


def all_blocks() -> list[Block]:
    """Every fenced block of every page."""
    return [b for p in pages() for b in blocks(p)]


@attrs.frozen
class Command:
    """One shell command of a block: environment assignments, then the argument vector."""

    block: Block
    text: str
    env: dict[str, str]
    argv: list[str]


def commands(block: Block) -> Iterator[Command]:
    """Shell commands of a bash/console block: continuations joined, comments dropped.

    In ``console`` blocks only lines starting with ``$ `` are commands (the rest is output).
    """
    lines = block.body.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    joined: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    for line in joined:
        words = shlex.split(line, comments=True)
        if not words:
            continue
        env: dict[str, str] = {}
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        yield Command(block, line.split(" #")[0].strip(), env, words)


def named_toml(page: str, name: str) -> str:
    """The TOML block of ``page`` whose first line is ``# name``."""
    found = [b.body for b in blocks(DOCS / page) if b.lang == "toml" and b.body.startswith(f"# {name}\n")]
    assert len(found) == 1, f"docs/{page}: expected one TOML block starting with '# {name}', found {len(found)}"
    return found[0]


def page_commands(page: str) -> list[Command]:
    """Every command of the page's shell blocks, in order (skipped blocks included)."""
    return [c for b in blocks(DOCS / page) if b.lang in SHELL_LANGS for c in commands(b)]
