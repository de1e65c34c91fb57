"""Reading a config file (skyrl_core.config.source): encodings, syntax errors restated with their key,
bounded nesting, and the line of every key for the loader's messages."""

from __future__ import annotations

import pytest
from foundation_support import BASE_TOML

from skyrl_core.config.loader import load_config
from skyrl_core.config.source import MAX_DEPTH, KeyLines, parse_text, read_document, restate_syntax_error
from skyrl_core.errors import ConfigError
from skyrl_core.testing import fresh_registry


def test_key_lines_follow_headers_dotted_and_quoted_keys_and_skip_multiline_strings():
    text = (
        "top = 1\n"                       # 1
        "[a]\n"                           # 2
        'b.c = 2\n'                       # 3
        '"d.e" = 3\n'                     # 4
        'text = """\n'                    # 5
        "fake = 4\n"                      # 6 (inside the string)
        '"""\n'                           # 7
        "inline = { x = 1, y = [2] }\n"   # 8
        "[[runs]]\n"                      # 9
        "  name = 'x'  # comment\n"       # 10
    )
    lines = KeyLines.of(text)
    assert lines.line_of("top") == 1
    assert lines.line_of("a") == 2
    assert lines.line_of("a.b.c") == 3 and lines.line_of("a.b") == 3
    assert lines.line_of("a.d.e") == 4  # a quoted key with a dot is one key
    assert lines.line_of("a.fake") is None
    assert lines.line_of("a.inline.y[0]") == 8  # inside an inline value: the value's line
    assert lines.line_of("runs") == 9 and lines.line_of("runs.name") == 10
    assert lines.line_of("a.missing") is None  # a key the file does not write has no line
    assert KeyLines.of(text, wanted=["a.b.c"]).line_of("runs") is None  # stops once the wanted keys are found


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE_TOML.encode())
    raw, _ = read_document(path)
    assert raw["model"]["path"] == "some/model"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'[model]\npath = "caf\xe9"\n', "not UTF-8 text: the byte 0xe9 at byte offset 19 (line 2, column 12)"),
        ("[model]\n".encode("utf-16"), "the file is UTF-16 text (it starts with the byte-order mark FF FE)"),
        ("[model]\n".encode("utf-32"), "the file is UTF-32 text"),
    ],
)
def test_a_file_that_is_not_utf8(tmp_path, data, expected):
    path = tmp_path / "x.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as exc:
        read_document(path)
    assert expected in str(exc.value) and "save" in str(exc.value)


def test_a_folder_or_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        read_document(tmp_path)
    with pytest.raises(ConfigError, match="config file not found"):
        read_document(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("[t]\na = 1\nb = 2\na = 3\n", "t.a", "the key 'a' of [t] is already set at line 2; a key can be set only"),
        ("a = 1\na = 2\n", "a", "the key 'a' is already set at line 1"),
        ("[t]\na = 1\n[u]\n[t]\n", "t", "the table [t] is already defined at line 1"),
        ("[t]\na = 1\n[[t]]\n", "t", "the array of tables [[t]] reuses the name of the table or key 't' written"),
        ("[t]\nname = grpo\n", "t.name", 'strings need quotes: name = "grpo"'),
        ("[t]\nlist = [1,\nb = 2\n", "t.list", "the value of 't.list' (line 2) is never closed"),
        ("[t\n", "", "Expected ']' at the end of a table declaration (at line 1, column 3)"),
    ],
)
def test_syntax_errors_name_the_key_or_table(text, path, fragment):
    with pytest.raises(ConfigError) as exc:
        parse_text(text)
    (issue,) = exc.value.issues
    assert issue.path == path
    assert issue.message.startswith("TOML syntax error: ") and fragment in issue.message


def test_restating_keeps_tomllibs_message():
    issue = restate_syntax_error("Cannot overwrite a value (at line 2, column 5)", "a = 1\na = 2\n")
    assert issue.message.startswith("TOML syntax error: Cannot overwrite a value (at line 2, column 5): ")


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("x = " + "[" * 3000 + "]" * 3000 + "\n", "x"),  # tomllib itself would raise RecursionError
        ("[t]\nx = " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", "t.x[0][0]..."),
        ("[" + ".".join(["k"] * (MAX_DEPTH + 2)) + "]\n", "k.k.k.k..."),
    ],
)
def test_nesting_is_bounded(text, path):
    with pytest.raises(ConfigError) as exc:
        parse_text(text)
    (issue,) = exc.value.issues
    assert issue.path == path and f"nested more than {MAX_DEPTH} levels deep" in issue.message
    assert issue.line in (1, 2)


def test_problems_of_a_loaded_file_carry_their_line(everything, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BASE_TOML + "\n[trainer]\nlr = inf\nsteps = 0\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, registry=fresh_registry(everything))
    text = path.read_text().splitlines()
    assert {(i.path, i.line) for i in exc.value.issues} == {
        ("trainer.lr", text.index("lr = inf") + 1),
        ("trainer.steps", text.index("steps = 0") + 1),
    }
    assert f"  - trainer.lr: must be finite, got inf (line {text.index('lr = inf') + 1})" in str(exc.value)
