"""mkdocs hook (see mkdocs.yml): what GitHub-style Markdown allows but the site needs differently.

Pages link to source files and READMEs of the repository (``../skyrl_core/hookspecs.py``),
which work when the Markdown is read on a code host or in an editor but are not part of the
site. On the site such a link becomes its text followed by the repository path in code, so
that strict builds still fail on broken links between pages. Fence info strings with more than
a language are cut to the language, and fenced blocks indented inside list items become
indented code blocks (Python-Markdown's fences do not nest).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
# An info string with more than the language (```toml pyproject: the tests use the second word)
# is not a fence for Python-Markdown; the site keeps the language only.
_FENCE_INFO = re.compile(r"^(?P<fence>[ \t]*`{3,}[\w+-]+)[ \t]+[^`\n]+$", re.MULTILINE)
# A fenced block indented inside a list item: Python-Markdown's fences cannot nest, so it becomes
# an indented code block of that list item (8 spaces), which keeps the list's numbering.
_NESTED_FENCE = re.compile(r"^(?P<indent>[ \t]+)(?P<fence>`{3,})[^\n]*\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
                           re.MULTILINE | re.DOTALL)


def _unfence(match: re.Match[str]) -> str:
    indent = len(match["indent"].expandtabs(4))
    lines = [line[indent:] if line[:indent].strip() == "" else line for line in match["body"].splitlines()]
    return "\n".join(" " * 8 + line if line.strip() else "" for line in lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite links that leave the docs folder; leave every other link to mkdocs' checks."""
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if "://" in target or target.startswith(("#", "mailto:")):
            return match.group(0)
        path = posixpath.normpath(posixpath.join(here, target.split("#")[0]))
        if not path.startswith("../"):
            return match.group(0)
        repo_path = path.removeprefix("../")
        text = match["text"]
        if text.strip("`") == repo_path or text.startswith("`"):
            return f"{text} (`{repo_path}` in the repository)" if text.strip("`") != repo_path else f"`{repo_path}`"
        return f"{text} (`{repo_path}`)"

    markdown = _NESTED_FENCE.sub(_unfence, _FENCE_INFO.sub(lambda m: m["fence"], markdown))
    # Leave code blocks alone: only prose carries links.
    parts = re.split(r"(^```.*?^```)", markdown, flags=re.MULTILINE | re.DOTALL)
    return "".join(part if part.startswith("```") else _LINK.sub(rewrite, part) for part in parts)
