"""Typed TOML configuration: schema, loader with collected errors, derived batch plan."""

from skyrl_core.config.fields import option
from skyrl_core.config.loader import load_config, parse_config
from skyrl_core.config.plan import BatchPlan, make_plan
from skyrl_core.config.schema import RunConfig

__all__ = ["BatchPlan", "RunConfig", "load_config", "make_plan", "option", "parse_config"]
