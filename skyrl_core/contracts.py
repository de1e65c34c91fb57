"""Contracts: what each kind of component must provide, checked before anything loads a model.

A component is checked against its kind's contract (``CONTRACTS``, mirroring the protocols in
``skyrl_core.protocols``) by looking at the implementation itself, without running it:

* a class (backend, strategy, environment, tracker): its constructor accepts the arguments
  the loop passes, and every required method exists with a signature that accepts the
  loop's call (and is ``async def`` where the loop awaits it);
* a function (advantage estimator, policy loss, dataset preparer): it accepts the loop's call.

Each problem is one line naming the component, its distribution and the member, e.g.::

    backend 't_backend' (skyrl-test-pkg 0.1.0): `generate` must be `async def generate(self, requests)`
    (the loop awaits it), but it is a plain function

``skyrl config validate``, ``skyrl doctor`` and the start of ``skyrl train``/``eval``/``sft``
run these checks; ``ContractError`` (exit code 2) carries every problem found.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from skyrl_core.errors import PluginError
from skyrl_core.specs import Kind

if TYPE_CHECKING:
    from skyrl_core.components import RunComponents
    from skyrl_core.plugins import Component, Registry

Style = Literal["sync", "async", "either"]


class ContractError(PluginError):
    """A selected component does not provide what its kind's contract requires."""


@attrs.frozen
class Call:
    """How the loop calls something: positional argument names and keyword names.

    ``style`` says whether it is awaited (``async``), called plainly (``sync``) or either.
    """

    args: tuple[str, ...] = ()
    kwargs: tuple[str, ...] = ()
    style: Style = "sync"

    def text(self, name: str) -> str:
        params = [*self.args, *(f"{k}=..." for k in self.kwargs)]
        prefix = "async def " if self.style == "async" else "def "
        return f"{prefix}{name}({', '.join(params)})"


@attrs.frozen
class Contract:
    """What the loop needs of one kind of component.

    Attributes:
        shape: ``class`` (constructed by the loop) or ``function`` (called by it).
        call: the constructor call (classes) or the function call.
        methods: required methods of a class and how the loop calls them.
        optional: methods the loop calls when present (checked only when they exist).
        attributes: attributes a class must declare (class attribute, property or annotation).
    """

    shape: Literal["class", "function"]
    call: Call
    methods: dict[str, Call] = attrs.field(factory=dict)
    optional: dict[str, Call] = attrs.field(factory=dict)
    attributes: tuple[str, ...] = ()


CONTRACTS: dict[Kind, Contract] = {
    Kind.BACKEND: Contract(
        "class",
        Call(("config",), ("model", "seed")),
        methods={
            "generate": Call(("requests",), style="async"),
            "update_weights": Call(("named_tensors",)),
            "reset_prefix_cache": Call(),
            "sleep": Call(),
            "wake": Call(),
            "shutdown": Call(),
        },
        attributes=("capabilities",),
    ),
    Kind.STRATEGY: Contract(
        "class",
        Call(("config",), ("model", "trainer", "seed", "need_ref", "need_critic", "total_optimizer_steps")),
        methods={
            "forward": Call(("batch",), ("role", "temperature", "need_entropy")),
            "train_step": Call(("batch", "loss_fn"), ("role", "temperature", "need_entropy")),
            "named_weights": Call(("bucket_bytes",)),
            "save_checkpoint": Call(("path",)),
            "load_checkpoint": Call(("path",)),
            "export_hf": Call(("path", "tokenizer")),
            "offload": Call(),
            "onload": Call(),
        },
    ),
    Kind.ENVIRONMENT: Contract(
        "class",
        Call(("config", "extras")),
        methods={"init": Call(("prompt",)), "step": Call(("action",), style="either")},
        optional={
            "close": Call(style="either"),
            "get_metrics": Call(style="either"),
        },
    ),
    Kind.ADVANTAGE_ESTIMATOR: Contract("function", Call(("inp", "config"))),
    Kind.POLICY_LOSS: Contract("function", Call(("inp", "config"))),
    Kind.DATASET_PREPARER: Contract("function", Call(("config", "out_dir"))),
    Kind.TRACKER: Contract(
        "class",
        Call(("config",), ("run_dir", "run_config")),
        methods={"log": Call(("metrics", "step")), "close": Call()},
    ),
}


def _accepts(fn: Any, call: Call, *, bound: bool) -> str | None:
    """Why ``fn`` cannot be called as ``call`` says (None when it can)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return None
    args = ([object()] if not bound else []) + [object()] * len(call.args)
    try:
        sig.bind(*args, **dict.fromkeys(call.kwargs, object()))
    except TypeError as exc:
        return f"({_params(sig)}) cannot be called as `{{name}}({_call_args(call)})` ({exc})"
    return None


def _mismatch(what: str, name: str, called: str, why: str) -> str:
    """``the method `train_step(self, batch)` cannot be called as `train_step(batch, loss_fn)` (...)``."""
    return f"the {what} `{name}{why.format(name=called)}".replace(") cannot", ")` cannot", 1)


def _params(sig: inspect.Signature) -> str:
    """A signature's parameters without annotations or defaults: ``self, batch, *, role``."""
    out: list[str] = []
    star = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
            star = True
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        else:
            if p.kind is p.KEYWORD_ONLY and not star:
                out.append("*")
                star = True
            out.append(p.name)
    return ", ".join(out)


def _call_args(call: Call) -> str:
    return ", ".join([*call.args, *(f"{k}=..." for k in call.kwargs)])


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def _declares(cls: type, name: str) -> bool:
    """A class attribute, property or annotation named ``name`` (on the class or a base)."""
    if hasattr(cls, name):
        return True
    return any(name in getattr(base, "__annotations__", {}) for base in inspect.getmro(cls))


def check_impl(kind: Kind, impl: Any) -> list[str]:
    """Problems of ``impl`` against ``kind``'s contract, one short phrase each (no names)."""
    contract = CONTRACTS.get(kind)
    if contract is None:
        return []
    problems: list[str] = []
    if contract.shape == "function":
        if inspect.isclass(impl) or not callable(impl):
            what = f"the class {impl.__name__}" if inspect.isclass(impl) else type(impl).__name__
            return [f"must be a function `{contract.call.text(kind.value)}`, got {what}"]
        why = _accepts(impl, contract.call, bound=True)  # a function's or callable object's own parameters
        if why:
            problems.append(_mismatch("function", getattr(impl, "__name__", type(impl).__name__), "fn", why))
        if _is_async(impl):
            problems.append("must be a plain function (the loop calls it directly), but it is `async def`")
        return problems
    if not inspect.isclass(impl):
        return [f"must be a class (the loop constructs it as `{contract.call.text('Class')[4:]}`), "
                f"got {type(impl).__name__}"]
    why = _accepts(impl, contract.call, bound=True)
    if why:
        problems.append(_mismatch("constructor", impl.__name__, impl.__name__, why))
    for name, call in contract.methods.items():
        problems += _check_method(impl, name, call, required=True)
    if kind is Kind.ENVIRONMENT and _inherits_abstract_step(impl):
        problems.append("does not implement `def step(action)` (TextEnv's own step is abstract)")
    for name, call in contract.optional.items():
        problems += _check_method(impl, name, call, required=False)
    for name in contract.attributes:
        if not _declares(impl, name):
            problems.append(
                f"missing attribute `{name}` (declare it on the class: a class attribute, a property or an "
                f"annotation `{name}: ...` set in __init__)"
            )
    return problems


def _inherits_abstract_step(cls: type) -> bool:
    from skyrl_core.protocols.env import TextEnv

    return inspect.getattr_static(cls, "step", None) is vars(TextEnv)["step"]


def _check_method(cls: type, name: str, call: Call, *, required: bool) -> list[str]:
    member = inspect.getattr_static(cls, name, None)
    if member is None:
        return [f"missing method `{call.text(name)}`"] if required else []
    if isinstance(member, staticmethod):
        fn, has_self = member.__func__, False
    elif isinstance(member, classmethod):
        fn, has_self = member.__func__, True
    else:
        fn, has_self = member, True
    if not callable(fn) or isinstance(member, property):
        return [f"`{name}` must be a method `{call.text(name)}`, got {type(member).__name__}"]
    out = []
    why = _accepts(fn, call, bound=not has_self)
    if why:
        out.append(_mismatch("method", name, name, why))
    if call.style == "async" and not _is_async(fn):
        out.append(f"`{name}` must be `{call.text(name)}` (the loop awaits it), but it is a plain function")
    if call.style == "sync" and _is_async(fn):
        out.append(f"`{name}` must be a plain method `{call.text(name)}` (the loop calls it directly), "
                   "but it is `async def`")
    return out


def describe(component: Component) -> str:
    """``"backend 't_backend' (skyrl-test-pkg 0.1.0)"``."""
    return f"{component.kind.label} {component.name!r} ({component.provider.describe()})"


def problems_of(component: Component, impl: Any | None = None) -> list[str]:
    """One line per problem of a registered component (``impl``: its loaded implementation)."""
    if component.kind is Kind.CONFIG_SECTION:
        return []
    impl = component.load() if impl is None else impl
    return [f"{describe(component)}: {p}" for p in check_impl(component.kind, impl)]


def raise_problems(lines: Sequence[str]) -> None:
    """Raise a ``ContractError`` listing ``lines`` (nothing when empty)."""
    if not lines:
        return
    if len(lines) == 1:
        raise ContractError(lines[0])
    raise ContractError(f"{len(lines)} components break their contracts:\n  - " + "\n  - ".join(lines))


def check_components(components: RunComponents, extra: Sequence[Any] = ()) -> None:
    """Check every component a run selected (and the ``extra`` chosen ones, e.g. environments);
    raise ``ContractError`` with every problem."""
    chosen = [components.backend, components.strategy, components.estimator, components.policy_loss,
              *components.trackers, *extra]
    raise_problems([line for c in chosen for line in problems_of(c.component, c.impl)])


def check_named(registry: Registry, kind: Kind, names: Iterable[str]) -> None:
    """Check the components ``names`` of ``kind`` (e.g. the environments a dataset uses)."""
    raise_problems([line for name in dict.fromkeys(names) for line in problems_of(registry.get(kind, name))])
