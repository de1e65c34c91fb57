"""A run's components, resolved once at start-up, and the one way to build a backend or strategy.

``resolve_components(cfg, registry)`` looks every selected name up (an unknown or ambiguous
name fails here, before any model loads), imports the implementations, checks them against
their contracts (``skyrl_core.contracts``) and returns a ``RunComponents`` that the loop uses
from then on: it never looks a name up again.

``build_backend`` and ``build_strategy`` are how ``skyrl train``, ``skyrl eval``, ``skyrl sft``
and ``skyrl export`` construct those two, honouring ``[runtime]`` (with ``mode = "ray"`` the
backend runs in Ray actors driven through ``RayBackend``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from skyrl_core.config.schema import ModelConfig, RunConfig, TrainerConfig
from skyrl_core.plugins import Component, Registry
from skyrl_core.specs import Kind


@attrs.frozen
class Chosen:
    """One selected component: the registry entry (spec + provider), its loaded implementation
    and its validated options (the config class's defaults when the TOML gives none)."""

    component: Component
    impl: Any
    config: Any

    @property
    def name(self) -> str:
        return self.component.name

    def describe(self) -> str:
        """E.g. ``"backend 'native' (skyrl-core 0.1.0)"``."""
        return f"{self.component.kind.label} {self.name!r} ({self.component.provider.describe()})"


@attrs.frozen
class RunComponents:
    """Every component a run selected (see the module docstring).

    Attributes:
        backend: ``[backend]``; ``impl`` is the backend class.
        strategy: ``[strategy]``; ``impl`` is the strategy class.
        estimator: ``[algorithm.advantage]``; ``impl`` is the estimator function.
        policy_loss: ``[algorithm.policy_loss]``; ``impl`` is the loss function.
        trackers: ``[tracking] trackers``, in order.
        requires_critic: the estimator's spec asks for critic values (a value model is trained).
        need_ref: the run needs a frozen reference policy (``[algorithm.kl] mode != "none"``).
    """

    backend: Chosen
    strategy: Chosen
    estimator: Chosen
    policy_loss: Chosen
    trackers: tuple[Chosen, ...]
    requires_critic: bool
    need_ref: bool


def choose(registry: Registry, kind: Kind, name: str, config: Any, where: str = "") -> Chosen:
    """Look ``name`` up, import it, and pair it with its options (defaults when ``config`` is None)."""
    component = registry.get(kind, name, where)
    if config is None and component.spec.config_cls is not None:
        config = component.spec.config_cls()
    return Chosen(component, component.load(), config)


def resolve_components(cfg: RunConfig, registry: Registry) -> RunComponents:
    """Resolve every component ``cfg`` selects, once (see the module docstring)."""
    from skyrl_core.contracts import check_components

    algo = cfg.algorithm
    estimator = choose(registry, Kind.ADVANTAGE_ESTIMATOR, algo.advantage.name, algo.advantage.config)
    resolved = RunComponents(
        backend=choose(registry, Kind.BACKEND, cfg.backend.name, cfg.backend.config),
        strategy=choose(registry, Kind.STRATEGY, cfg.strategy.name, cfg.strategy.config),
        estimator=estimator,
        policy_loss=choose(registry, Kind.POLICY_LOSS, algo.policy_loss.name, algo.policy_loss.config),
        trackers=tuple(
            choose(registry, Kind.TRACKER, name, cfg.tracking.options.get(name)) for name in cfg.tracking.trackers
        ),
        requires_critic=estimator.component.spec.requires_critic,
        need_ref=algo.kl.mode != "none",
    )
    # The environments the file configures or names as data.default_env_class are checked too
    # (those only data rows name are checked once the data files exist: startup.check_data).
    environments = [choose(registry, Kind.ENVIRONMENT, name, config) for name, config in cfg.environments.items()]
    check_components(resolved, environments)
    check_capabilities(cfg, resolved)
    return resolved


def check_capabilities(cfg: RunConfig, parts: RunComponents) -> None:
    """Options that ask more of the chosen components than their contracts: the critic's own
    checkpoint needs a critic, and a reference updated during the run a ``ResetsReference`` strategy."""
    from skyrl_core.contracts import ContractError
    from skyrl_core.errors import ConfigError, ConfigIssue
    from skyrl_core.protocols.strategy import ResetsReference

    if cfg.model.critic_path is not None and not parts.requires_critic:
        raise ConfigError(
            [ConfigIssue("model.critic_path", f"is set, but advantage estimator {parts.estimator.name!r} trains no "
                         "critic (gae does); remove it or choose an estimator that uses a critic")],
            "the run's config",
        )
    strategy = parts.strategy
    if parts.need_ref and cfg.algorithm.kl.update_ref_every_epoch and not issubclass(strategy.impl, ResetsReference):
        raise ContractError(
            f"{strategy.describe()}: [algorithm.kl] update_ref_every_epoch = true needs a strategy that can copy the "
            "policy into its reference model (the ResetsReference protocol: `def reset_ref(self)`), and this one "
            "cannot; set update_ref_every_epoch = false or use the local or fsdp2 strategy"
        )


def model_for(cfg: RunConfig, model_path: str | Path) -> ModelConfig:
    """``[model]`` pointing at ``model_path`` (a warm start's export, a checkpoint's model)."""
    return attrs.evolve(cfg.model, path=str(model_path), tiny=None)


def build_backend(cfg: RunConfig, registry: Registry, chosen: Chosen, model: ModelConfig) -> Any:
    """The inference backend of ``chosen`` for ``model``: in this process, or (``[runtime] mode =
    "ray"``) in Ray actors behind a ``RayBackend`` that drives them through the same protocol."""
    if cfg.runtime.mode == "ray":
        from skyrl_core.runtime.engine import RayBackend

        return RayBackend(chosen.name, chosen.config, model=model, seed=cfg.run.seed)
    return registry.create(Kind.BACKEND, chosen.name, chosen.config, model=model, seed=cfg.run.seed)


def build_strategy(
    cfg: RunConfig,
    registry: Registry,
    chosen: Chosen,
    model: ModelConfig,
    *,
    trainer: TrainerConfig | None = None,
    need_ref: bool = False,
    need_critic: bool = False,
    total_optimizer_steps: int = 1,
) -> Any:
    """The training strategy of ``chosen`` for ``model`` (``trainer`` defaults to ``[trainer]``)."""
    return registry.create(
        Kind.STRATEGY,
        chosen.name,
        chosen.config,
        model=model,
        trainer=trainer or cfg.trainer,
        seed=cfg.run.seed,
        need_ref=need_ref,
        need_critic=need_critic,
        total_optimizer_steps=total_optimizer_steps,
    )


def build_trackers(
    registry: Registry, components: RunComponents, run_dir: Path, run_name: str, *, first_step: int = 0
) -> list[Any]:
    """One tracker object per ``[tracking] trackers`` entry, constructed as
    ``Tracker(config, run_dir=..., run_config={"name": ..., "first_step": ...})``
    (``skyrl_core.protocols.tracker``: ``first_step`` is where a resumed run starts logging again)."""
    run_config = {"name": run_name, "first_step": first_step}
    return [
        registry.create(Kind.TRACKER, t.name, t.config, run_dir=run_dir, run_config=run_config)
        for t in components.trackers
    ]
