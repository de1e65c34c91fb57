"""Builtin environments and the helpers environment authors use.

* ``ArithmeticEnv`` (``env_class = "arithmetic"``) and its dataset preparer
  ``prepare_arithmetic``: the quickstart task.
* ``ToolGroup`` / ``tool`` / ``parse_tool_call``: named tools for multi-turn environments.

The environment contract is ``skyrl_core.protocols.env``; see docs/environments.md.
"""

from skyrl_core.envs.arithmetic import ArithmeticEnv, ArithmeticEnvConfig, last_boxed, parse_integer
from skyrl_core.envs.arithmetic_data import ArithmeticDataConfig, prepare_arithmetic
from skyrl_core.envs.tools import ToolError, ToolGroup, find_tool, parse_tool_call, tool

__all__ = [
    "ArithmeticDataConfig",
    "ArithmeticEnv",
    "ArithmeticEnvConfig",
    "ToolError",
    "ToolGroup",
    "find_tool",
    "last_boxed",
    "parse_integer",
    "parse_tool_call",
    "prepare_arithmetic",
    "tool",
]
