"""The text of a config file: reading it, and finding where each key is written.

``read_document`` turns everything that keeps a file from being a TOML table into one
``ConfigError`` with a location: a missing file, bytes that are not UTF-8 (with the byte
offset), a syntax error (tomllib's message plus the key or table involved, e.g. which key is
set twice and where first), and nesting deeper than ``MAX_DEPTH`` (tomllib itself would
raise ``RecursionError`` on a few hundred nested arrays).

``KeyLines`` maps dotted key paths to the line that writes them, so that the loader's
problems, found on the parsed document, can say "(line 12)". It reads the text line by line
(headers, ``key = value``, multi-line strings skipped) rather than parsing TOML again, and
gives no line where it is unsure.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from skyrl_core.errors import ConfigError, ConfigIssue

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Deepest nesting of tables and arrays a config may have (the schema needs 4 or 5 levels).
MAX_DEPTH = 32

_BARE = r"[A-Za-z0-9_-]+"
_BASIC = r'"(?:[^"\\\n]|\\.)*"'
_LITERAL = r"'[^'\n]*'"
_PART = rf"(?:{_BARE}|{_BASIC}|{_LITERAL})"
_KEY = rf"{_PART}(?:[ \t]*\.[ \t]*{_PART})*"
_PARTS = re.compile(_PART)
_BARE_KEY = re.compile(_BARE)
_HEADER = re.compile(rf"^[ \t]*(\[\[?)[ \t]*({_KEY})[ \t]*(\]\]?)[ \t]*(?:#.*)?$")
_ASSIGN = re.compile(rf"^[ \t]*({_KEY})[ \t]*=(.*)$")
_POSITION = re.compile(r"^(?P<what>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$", re.S)
_BARE_WORD = re.compile(r"^[A-Za-z_][\w./:-]*$")


def split_key(text: str) -> tuple[str, ...]:
    """``'a."b.c" . d'`` -> ``("a", "b.c", "d")`` (a TOML key as written)."""
    if _BARE_KEY.fullmatch(text):
        return (text,)
    parts = []
    for match in _PARTS.finditer(text):
        part = match.group(0)
        if part[0] == '"':
            try:
                part = tomllib.loads(f"k = {part}")["k"]
            except tomllib.TOMLDecodeError:
                part = part[1:-1]
        elif part[0] == "'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def _dotted(keys: tuple[str, ...]) -> str:
    return ".".join(keys)


@attrs.define
class KeyLines:
    """Where each key path of a file is written (the first time), read from its text.

    ``tables`` holds headers (``[a.b]``, ``[[a.b]]``) and the tables that dotted keys imply;
    ``values`` holds ``key = value`` lines (inline tables and arrays included).
    """

    tables: dict[str, int] = attrs.field(factory=dict)
    values: dict[str, int] = attrs.field(factory=dict)
    #: The table that is open after the last line read, and that line's own key (if any).
    current: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str, *, stop: int | None = None, wanted: Iterable[str] | None = None) -> KeyLines:
        """Read ``text``: only its first ``stop - 1`` lines when ``stop`` is given, and only until
        every path of ``wanted`` is found when that is given (a huge file is read once, and only
        as far as the problems that are shown)."""
        out = cls()
        missing = set(wanted) if wanted is not None else None
        closing: str | None = None  # the delimiter of an open multi-line string
        for number, line in enumerate(text.splitlines(), start=1):
            if (stop is not None and number >= stop) or missing == set():
                break
            if closing is not None:
                if closing in line:
                    closing = None
                continue
            kind, keys, value = classify(line)
            if kind == "header":
                out.current = keys
                out._table(keys, number)
                if missing:
                    missing.discard(_dotted(keys))
            elif kind == "value":
                full = out.current + keys
                out.values.setdefault(_dotted(full), number)
                if missing:
                    missing.discard(_dotted(full))
                for i in range(len(out.current) + 1, min(len(full), MAX_DEPTH + 1)):
                    out.tables.setdefault(_dotted(full[:i]), number)
                closing = _opens_multiline(value)
        return out

    def _table(self, keys: tuple[str, ...], number: int) -> None:
        for i in range(1, min(len(keys), MAX_DEPTH + 1)):
            self.tables.setdefault(_dotted(keys[:i]), number)
        self.tables.setdefault(_dotted(keys), number)

    def first(self, path: str) -> int | None:
        """The line that first writes ``path`` as a key or a table."""
        return self.values.get(path) or self.tables.get(path)

    def line_of(self, path: str) -> int | None:
        """The line of a problem at ``path`` (``a.b[2].c``): where the key is written, or the
        value it lies inside (an inline table or array); None when the file does not write it."""
        plain = re.sub(r"\[\d+\]", "", path) if "[" in path else path
        if not plain:
            return None
        found = self.first(plain)
        if found:
            return found
        parts = plain.split(".")
        for i in range(len(parts) - 1, 0, -1):
            found = self.values.get(".".join(parts[:i]))
            if found:
                return found
        return None


def classify(line: str) -> tuple[str, tuple[str, ...], str]:
    """``("header", keys, "[" or "[[")``, ``("value", keys, value text)`` or ``("other", (), "")``."""
    if line.lstrip().startswith("["):
        header = _HEADER.match(line)
        if header and len(header.group(1)) == len(header.group(3)):
            return "header", split_key(header.group(2)), header.group(1)
        return "other", (), ""
    assign = _ASSIGN.match(line)
    if assign:
        return "value", split_key(assign.group(1)), assign.group(2)
    return "other", (), ""


def _opens_multiline(value: str) -> str | None:
    value = value.strip()
    for delim in ('"""', "'''"):
        if value.startswith(delim) and delim not in value[3:]:
            return delim
    return None


# -- reading a file ----------------------------------------------------------------------------


def read_document(path: str | Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML document of ``path`` and its text; every reason it cannot be read is a
    ``ConfigError`` with one issue saying where (line, byte offset, key) and what to do."""
    p = Path(path)
    if not p.is_file():
        problem = "is a folder, not a config file" if p.is_dir() else "config file not found"
        raise ConfigError([ConfigIssue("", f"{problem}: {p} (check the path)")], str(p))
    data = p.read_bytes()
    text = decode(data, str(p))
    return parse_text(text, str(p)), text


def decode(data: bytes, source: str) -> str:
    """UTF-8 text of a file (a UTF-8 byte-order mark is dropped); a ``ConfigError`` otherwise."""
    for bom, encoding in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                          (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(bom):
            message = (f"the file is {encoding} text (it starts with the byte-order mark {bom.hex(' ').upper()}); "
                       "TOML files must be UTF-8: save it as UTF-8")
            raise ConfigError([ConfigIssue("", message)], source)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = (f"not UTF-8 text: the byte 0x{data[exc.start]:02x} at byte offset {exc.start} "
                   f"(line {line}, column {column}) cannot be decoded ({exc.reason}); TOML files must be UTF-8: "
                   "save the file as UTF-8")
        raise ConfigError([ConfigIssue("", message)], source) from None


def parse_text(text: str, source: str = "<config>") -> dict[str, Any]:
    """Parse TOML text; syntax errors and deep nesting become a ``ConfigError``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([restate_syntax_error(str(exc), text)], source) from None
    except RecursionError:
        raise ConfigError([_too_deep_in_text(text)], source) from None
    except ValueError as exc:  # tomllib reads integers with int(), which refuses more than 4300 digits
        raise ConfigError([_huge_integer(text, exc)], source) from None
    issue = too_deep(doc, text)
    if issue is not None:
        raise ConfigError([issue], source)
    return doc


# -- syntax errors -----------------------------------------------------------------------------

_DUPLICATE = ("Cannot overwrite a value", "Cannot declare", "Cannot redefine namespace",
              "Cannot mutate immutable namespace", "Duplicate inline table key")


def restate_syntax_error(message: str, text: str) -> ConfigIssue:
    """tomllib's message, with the key or table involved and, for a key or table written
    twice, where it was first written."""
    found = _POSITION.match(message)
    base = f"TOML syntax error: {message}"
    if not found or not found.group("line"):
        return ConfigIssue("", base)
    number = int(found.group("line"))
    lines = text.splitlines()
    line = lines[number - 1] if number <= len(lines) else ""
    before = KeyLines.of(text, stop=number)
    kind, keys, value = classify(line)
    what = found.group("what")
    column = int(found.group("col"))
    starts_line = column <= len(line) - len(line.lstrip()) + 1
    if what.startswith(("Unclosed array", "Unclosed inline table")) or (
        what.startswith("Invalid value") and kind == "value" and starts_line  # a key where an element belongs
    ):
        unclosed = _unclosed(base, lines, number - (kind == "value"))
        if unclosed is not None or not what.startswith("Invalid value"):
            return unclosed or ConfigIssue("", base)
    if kind == "other":  # a broken line: name the table it is in (none for a broken header)
        if line.lstrip().startswith("[") or not before.current:
            return ConfigIssue("", base)
        return ConfigIssue(_dotted(before.current), base)
    full = keys if kind == "header" else before.current + keys
    path = _dotted(full)
    if what.startswith(_DUPLICATE):
        first = before.first(path)
        at = f"at line {first}" if first else "above"
        if kind == "header" and value == "[[":
            detail = f"the array of tables [[{path}]] reuses the name of the table or key {path!r} written {at}"
            advice = f"write the table [{path}] once, with single brackets"
        elif kind == "header":
            detail = f"the table [{path}] is already defined {at}"
            advice = "declare a table once and put all its keys under that header"
        else:
            detail = f"the key {keys[-1]!r}" + (f" of [{_dotted(before.current)}]" if before.current else "")
            detail += f" is already set at line {first}" if first else " is already set above (or is a table)"
            advice = "a key can be set only once: remove one of them"
        return ConfigIssue(path, f"{base}: {detail}; {advice}")
    hint = ""
    if what.startswith("Illegal character '\\n'"):
        hint = "; a string is not closed on this line (or use triple quotes for a multi-line string)"
    if kind == "value" and what.startswith(("Invalid value", "Expected newline")):
        word = value.split("#", 1)[0].strip()
        if _BARE_WORD.match(word) and word not in ("true", "false", "inf", "nan"):
            hint = f"; strings need quotes: {keys[-1]} = \"{word}\""
    return ConfigIssue(path, f"{base} in `{line.strip()[:80]}`{hint}")


def _unclosed(base: str, lines: list[str], number: int) -> ConfigIssue | None:
    """tomllib reports an unclosed array where it gave up (often the next key); name the key
    whose value opens it instead (None when no line above opens one)."""
    for start in range(min(number, len(lines)), 0, -1):
        kind, keys, value = classify(lines[start - 1])
        if kind == "header":
            break
        value = value.split("#", 1)[0]
        if kind == "value" and (value.count("[") > value.count("]") or value.count("{") > value.count("}")):
            full = KeyLines.of("\n".join(lines), stop=start).current + keys
            return ConfigIssue(_dotted(full), f"{base}: the value of {_dotted(full)!r} (line {start}) is never closed")
    return None


def _huge_integer(text: str, exc: ValueError) -> ConfigIssue:
    match = re.search(r"[0-9_]{1000,}", text)
    message = (f"an integer with thousands of digits, more than Python reads ({str(exc).split(';')[0]}); "
               "no config value needs more than 19: check how the file was generated")
    if match is None:
        return ConfigIssue("", message)
    number = text.count("\n", 0, match.start()) + 1
    kind, keys, _ = classify(text.splitlines()[number - 1])
    path = _dotted(KeyLines.of(text, stop=number).current + keys) if kind == "value" else ""
    return ConfigIssue(path, message, number)


# -- nesting depth -----------------------------------------------------------------------------


def _first_too_deep(doc: Any, limit: int) -> list[str | int] | None:
    """The key path of the first value nested more than ``limit`` levels deep (iterative)."""
    stack: list[tuple[Any, list[str | int]]] = [(doc, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > limit:
            return path
        if isinstance(node, dict):
            stack.extend((v, [*path, k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, [*path, i]) for i, v in enumerate(node))
    return None


def too_deep(doc: dict[str, Any], text: str | None = None) -> ConfigIssue | None:
    """The issue for a document nested deeper than ``MAX_DEPTH`` (None when it is not); with
    the document's ``text``, it gives the line."""
    path = _first_too_deep(doc, MAX_DEPTH)
    if path is None:
        return None
    shown = ""
    for part in path[:4]:  # where the nesting starts; the full path may be thousands of keys
        shown += f"[{part}]" if isinstance(part, int) else ("." if shown else "") + part
    line = KeyLines.of(text).line_of(shown) if text is not None else None
    return ConfigIssue(shown + "...", _DEPTH_MESSAGE, line)


_DEPTH_MESSAGE = (f"nested more than {MAX_DEPTH} levels deep (tables or arrays inside each other); "
                  "a skyrl config needs a few levels: check how the file was generated")


def _too_deep_in_text(text: str) -> ConfigIssue:
    """The issue for text whose nested arrays or inline tables are too deep for tomllib."""
    depth, key, current = 0, (), ()
    for number, line in enumerate(text.splitlines(), start=1):
        if depth == 0:
            kind, keys, _ = classify(line)
            if kind == "header":
                current = keys
                continue
            if kind == "value":
                key = current + keys
        quote = None
        for char in line:
            if quote:
                quote = None if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#":
                break
            elif char in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return ConfigIssue(_dotted(key), _DEPTH_MESSAGE, number)
            elif char in "]}":
                depth = max(0, depth - 1)
    return ConfigIssue(_dotted(key), _DEPTH_MESSAGE)
