"""docs/config.md is generated from the schema's help texts and must not go stale."""

from __future__ import annotations

import typing

import attrs
from foundation_support import REPO

from skyrl_core.config import schema
from skyrl_core.config.render import SECTIONS, reference_markdown
from skyrl_core.plugins import build_registry
from skyrl_core.specs import Kind

DOC = REPO / "docs" / "config.md"
REGENERATE = "skyrl config reference --out docs/config.md"


def test_docs_config_md_is_up_to_date():
    assert DOC.exists(), f"docs/config.md is missing; generate it with `{REGENERATE}`"
    fresh = reference_markdown()
    assert DOC.read_text() == fresh, (
        "docs/config.md is stale: the config schema or a builtin component's options changed. "
        f"Regenerate it with `{REGENERATE}` and commit the result."
    )


def _attrs_types(cls: type) -> typing.Iterator[tuple[str, type]]:
    hints = typing.get_type_hints(cls, vars(schema))
    for field in attrs.fields(cls):
        for tp in (hints[field.name], *typing.get_args(hints[field.name])):
            if attrs.has(tp) and tp is not schema.ComponentRef:
                yield field.name, tp


def test_every_core_table_is_in_the_reference():
    documented = {cls for _, cls in SECTIONS}
    todo, seen = [schema.RunConfig], set()
    while todo:
        cls = todo.pop()
        for name, sub in _attrs_types(cls):
            assert sub in documented, f"{cls.__name__}.{name} ({sub.__name__}) is missing from render.SECTIONS"
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)


def test_every_config_field_has_help_text():
    classes = [schema.RunConfig, *(cls for _, cls in SECTIONS)]
    registry = build_registry(entry_points=False)
    classes += [c.spec.config_cls for kind in Kind for c in registry.components[kind].values() if c.spec.config_cls]
    missing = [
        f"{cls.__module__}.{cls.__name__}.{f.name}"
        for cls in classes
        for f in attrs.fields(cls)
        if not f.metadata.get("help")
    ]
    assert not missing, f"config fields without help text (declare them with option(help=...)): {missing}"
