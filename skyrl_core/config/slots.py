"""Where a run's TOML chooses components: one table drives the loader, the schema's defaults,
``skyrl config show`` and the configuration reference.

Each ``Slot`` is one place in the file and one of four shapes:

* ``named``: a table whose ``name`` key picks one component and whose other keys are that
  component's options (``[backend]``, ``[strategy]``, ``[algorithm.advantage]``,
  ``[algorithm.policy_loss]``); ``default`` is the component used when the table or its
  ``name`` is absent (the only place these defaults are written);
* ``keyed``: one sub-table per component name holding its options
  (``[environments.<name>]``; environments are picked per dataset row by ``env_class``);
* ``listed``: names listed under ``list_key``, options in ``[<path>.<name>]``
  (``[tracking] trackers = [...]`` and ``[tracking.<name>]``);
* ``option``: one key names the component, another holds its options
  (``[data] generate = "..."`` with ``generate_options``);
* ``section``: top-level tables owned by plugins (``[dapo]``).

Torch-free, like the rest of ``skyrl_core.config``.
"""

from __future__ import annotations

from typing import Literal

import attrs

from skyrl_core.specs import Kind

Shape = Literal["named", "keyed", "listed", "option", "section"]


@attrs.frozen
class Slot:
    """One place in a run's TOML where components of ``kind`` are chosen (see the module docstring).

    Attributes:
        kind: the component kind.
        path: the table, e.g. ``("algorithm", "advantage")`` (empty for ``section``).
        shape: how names and options are written there.
        default: the component a ``named`` slot uses when the TOML names none.
        name_key: the key naming the component (``named``: ``name``; ``option``: e.g. ``generate``).
        options_key: ``option`` slots: the key holding the options (``generate_options``);
            ``listed`` slots: the key listing the names (``trackers``).
    """

    kind: Kind
    path: tuple[str, ...]
    shape: Shape
    default: str | None = None
    name_key: str = "name"
    options_key: str | None = None

    @property
    def where(self) -> str:
        """The TOML table, e.g. ``[algorithm.advantage]``."""
        return "[" + ".".join(self.path) + "]" if self.path else "a top-level table"


SLOTS: tuple[Slot, ...] = (
    Slot(Kind.BACKEND, ("backend",), "named", default="native"),
    Slot(Kind.STRATEGY, ("strategy",), "named", default="local"),
    Slot(Kind.ADVANTAGE_ESTIMATOR, ("algorithm", "advantage"), "named", default="grpo"),
    Slot(Kind.POLICY_LOSS, ("algorithm", "policy_loss"), "named", default="ppo_clip"),
    Slot(Kind.ENVIRONMENT, ("environments",), "keyed"),
    Slot(Kind.TRACKER, ("tracking",), "listed", options_key="trackers"),
    Slot(Kind.DATASET_PREPARER, ("data",), "option", name_key="generate", options_key="generate_options"),
    Slot(Kind.CONFIG_SECTION, (), "section"),
)


def slot_of(kind: Kind) -> Slot:
    """The slot where components of ``kind`` are chosen."""
    return next(s for s in SLOTS if s.kind is kind)


def default_name(kind: Kind) -> str:
    """The component a ``named`` slot of ``kind`` uses when the TOML names none."""
    default = slot_of(kind).default
    if default is None:
        raise ValueError(f"{kind.label}s have no default component")
    return default


def named_slots() -> tuple[Slot, ...]:
    """The ``named`` slots, in the order the file's tables appear in the reference."""
    return tuple(s for s in SLOTS if s.shape == "named")
