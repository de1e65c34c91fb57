"""``skyrl doctor`` finds another distribution's ``skyrl`` command or ``skyrl_core`` module.

The other distributions here are test doubles: ``*.dist-info`` folders written into a temporary
directory put on ``sys.path`` (importlib.metadata finds them as it finds installed ones), and a
scripts folder holding the ``skyrl`` script pip would have written. docs/coexisting_with_skyrl.md
records what the real PyPI ``skyrl`` 0.3.0 does (module ``skyrl``, no command: no clash).
"""

from __future__ import annotations

import sys
from pathlib import Path

from skyrl_core import doctor
from skyrl_core.name_clashes import clashes, command_providers

OUR_SCRIPT = f"#!{sys.executable}\nimport sys\nfrom skyrl_core.cli import main\nsys.exit(main())\n"
THEIR_SCRIPT = f"#!{sys.executable}\nimport sys\nfrom rival_double.cli import app\nsys.exit(app())\n"


def fake_distribution(site: Path, name: str, version: str, *, command: str | None = None,
                      modules: tuple[str, ...] = ()) -> None:
    """A test double of an installed distribution: its dist-info (METADATA, entry points, RECORD)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if command:
        (info / "entry_points.txt").write_text(f"[console_scripts]\nskyrl = {command}\n")
    record = [f"{m}/__init__.py,," for m in modules] + [f"{info.name}/METADATA,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def scripts(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    (folder / "skyrl").write_text(text)
    return folder


def test_a_clean_install_has_no_clash(tmp_path):
    assert ("skyrl-core 0.1.0", "skyrl_core.cli:main") in command_providers()
    assert clashes(scripts(tmp_path, OUR_SCRIPT)) == ([], [])


def test_novasky_skyrl_double_is_reported_as_harmless(tmp_path, monkeypatch):
    fake_distribution(tmp_path / "site", "skyrl", "0.3.0", modules=("skyrl",))  # like PyPI's skyrl 0.3.0
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    lines, problems = clashes(scripts(tmp_path, OUR_SCRIPT))
    assert problems == []
    assert lines == ["also here     skyrl 0.3.0 (PyPI's `skyrl` is NovaSky-AI's SkyRL: module `skyrl`, no clash "
                     "with skyrl-core's command or modules; see docs/coexisting_with_skyrl.md)"]


def test_a_rival_skyrl_command_is_a_problem_naming_it_and_the_fix(tmp_path, monkeypatch):
    fake_distribution(tmp_path / "site", "rival-double", "2.0", command="rival_double.cli:app")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    bin_dir = scripts(tmp_path, THEIR_SCRIPT)  # installed after skyrl-core: its script won
    _, problems = clashes(bin_dir)
    declared, replaced = problems
    assert declared.startswith("the distribution rival-double 2.0 also installs a `skyrl` command "
                               "(running rival_double.cli:app)")
    assert "python -m skyrl_core.cli" in declared
    assert replaced == (
        f"{bin_dir / 'skyrl'} is not skyrl-core's `skyrl` command (it runs `from rival_double.cli import app`): "
        "another distribution replaced it. Reinstall skyrl-core (`pip install --force-reinstall --no-deps "
        "skyrl-core`) or run `python -m skyrl_core.cli`"
    )
    # skyrl-core installed last: the script is ours again; the declaration alone is still reported
    _, problems = clashes(scripts(tmp_path / "again", OUR_SCRIPT))
    assert [p.split(" also installs")[0] for p in problems] == ["the distribution rival-double 2.0"]


def test_a_distribution_shipping_skyrl_core_files_is_a_problem(tmp_path, monkeypatch):
    fake_distribution(tmp_path / "site", "shadow-double", "1.0", modules=("skyrl_core",))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    _, problems = clashes(scripts(tmp_path, OUR_SCRIPT))
    assert problems == [
        "the module skyrl_core is also installed by the distribution shadow-double: their files overwrite "
        "skyrl-core's. Uninstall shadow-double, then reinstall skyrl-core (`pip install --force-reinstall "
        "--no-deps skyrl-core`)"
    ]


def test_doctor_lists_the_clash_under_problems(tmp_path, monkeypatch):
    from skyrl_core.plugins import build_registry

    fake_distribution(tmp_path / "site", "rival-double", "2.0", command="rival_double.cli:app")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    lines, problems = doctor.report(build_registry(only=[]))
    assert any(p.startswith("the distribution rival-double 2.0 also installs a `skyrl` command") for p in problems)
    assert "problems:" in lines
