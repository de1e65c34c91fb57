"""Tool groups: named tools as methods, callable by name from an environment.

::

    class Calculator(ToolGroup):
        @tool
        def add(self, a: int, b: int) -> int:
            "Add two integers."
            return a + b

    calc = Calculator("calculator")
    calc.execute_tool("add", {"a": 2, "b": 3})   # 5

``parse_tool_call`` reads a call written by the model as
``<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>`` (the Hermes /
Qwen convention); environments choose their own syntax if they prefer.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from skyrl_core.errors import did_you_mean

_TOOL_ATTR = "__skyrl_tool__"


class ToolError(Exception):
    """A tool call that cannot be executed (unknown tool, bad arguments).

    Environments usually turn it into an observation so the model can correct itself.
    """


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Mark a ``ToolGroup`` method as a tool (``@tool`` or ``@tool(name="other_name")``)."""

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _TOOL_ATTR, name or f.__name__)
        return f

    return mark(fn) if fn is not None else mark


class ToolGroup:
    """A named set of tools: the methods decorated with ``@tool``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tools: dict[str, Callable[..., Any]] = {}
        for attr in dir(type(self)):
            member = getattr(type(self), attr, None)
            tool_name = getattr(member, _TOOL_ATTR, None)
            if tool_name is not None:
                self._tools[tool_name] = getattr(self, attr)

    def get_tool_names(self) -> list[str]:
        """Names of the tools in this group."""
        return sorted(self._tools)

    def describe(self) -> list[dict[str, Any]]:
        """``[{"name", "description", "parameters"}]`` for prompts (from signatures and docstrings)."""
        out = []
        for tool_name, fn in sorted(self._tools.items()):
            params = [p for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD]
            out.append(
                {
                    "name": tool_name,
                    "description": inspect.getdoc(fn) or "",
                    "parameters": [p.name for p in params],
                }
            )
        return out

    def get_tool(self, tool_name: str) -> Callable[..., Any]:
        """The bound method of ``tool_name`` (``ToolError`` with suggestions if unknown)."""
        fn = self._tools.get(tool_name)
        if fn is None:
            hint = did_you_mean(tool_name, self._tools)
            raise ToolError(
                f"unknown tool {tool_name!r} in group {self.name!r}.{hint} "
                f"Available: {', '.join(self.get_tool_names()) or 'none'}."
            )
        return fn

    def execute_tool(self, tool_name: str, args: Mapping[str, Any] | Sequence[Any] | None = None) -> Any:
        """Call a tool with keyword (mapping) or positional (sequence) arguments.

        Raises ``ToolError`` for an unknown tool or arguments that do not fit its signature;
        exceptions raised by the tool itself propagate unchanged. A tool defined with
        ``async def`` returns a coroutine: use ``aexecute_tool``.
        """
        fn = self.get_tool(tool_name)
        call_args, call_kwargs = _split_args(args)
        try:
            inspect.signature(fn).bind(*call_args, **call_kwargs)
        except TypeError as exc:
            raise ToolError(f"tool {tool_name!r}: bad arguments {args!r}: {exc}") from exc
        return fn(*call_args, **call_kwargs)

    async def aexecute_tool(self, tool_name: str, args: Mapping[str, Any] | Sequence[Any] | None = None) -> Any:
        """``execute_tool`` for async environments; awaits async tools."""
        result = self.execute_tool(tool_name, args)
        if inspect.isawaitable(result):
            result = await result
        return result


def _split_args(args: Mapping[str, Any] | Sequence[Any] | None) -> tuple[list[Any], dict[str, Any]]:
    if args is None:
        return [], {}
    if isinstance(args, Mapping):
        return [], dict(args)
    if isinstance(args, (list, tuple)):
        return list(args), {}
    return [args], {}


def find_tool(groups: Sequence[ToolGroup], tool_name: str) -> ToolGroup:
    """The group that provides ``tool_name`` (``ToolError`` listing every tool if none does)."""
    for group in groups:
        if tool_name in group._tools:
            return group
    every = sorted(n for g in groups for n in g.get_tool_names())
    raise ToolError(f"unknown tool {tool_name!r}.{did_you_mean(tool_name, every)} Available: {', '.join(every)}.")


_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def parse_tool_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """The last ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` in ``text``.

    Returns ``(name, arguments)``, or None when there is no call. A call that is not valid
    JSON raises ``ToolError`` (so the environment can tell the model).
    """
    matches = _CALL_RE.findall(text)
    if not matches:
        return None
    body = matches[-1].strip()
    try:
        call = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ToolError(f"the tool call is not valid JSON: {exc.msg} (at character {exc.pos})") from exc
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise ToolError('a tool call must be an object like {"name": "...", "arguments": {...}}')
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ToolError(f"the tool call's arguments are not valid JSON: {exc.msg}") from exc
    if not isinstance(arguments, dict):
        raise ToolError(f"tool call arguments must be an object, got {type(arguments).__name__}")
    return call["name"], arguments
