"""Tool groups and tool-call parsing."""

from __future__ import annotations

import asyncio

import pytest

from skyrl_core.envs.tools import ToolError, ToolGroup, find_tool, parse_tool_call, tool


class Calculator(ToolGroup):
    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool(name="mul")
    def multiply(self, a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    @tool
    async def slow_neg(self, a: int) -> int:
        """Negate, asynchronously."""
        await asyncio.sleep(0)
        return -a

    def helper(self) -> None:
        """Not a tool."""


class Text(ToolGroup):
    @tool
    def upper(self, s: str) -> str:
        """Upper-case a string."""
        return s.upper()


def test_named_tools_execute_by_name():
    calc = Calculator("calculator")
    assert calc.get_tool_names() == ["add", "mul", "slow_neg"]
    assert calc.execute_tool("add", {"a": 2, "b": 3}) == 5
    assert calc.execute_tool("mul", [4, 5]) == 20
    assert asyncio.run(calc.aexecute_tool("slow_neg", {"a": 3})) == -3
    assert calc.describe()[0] == {"name": "add", "description": "Add two integers.", "parameters": ["a", "b"]}


def test_bad_calls_raise_tool_errors():
    calc = Calculator("calculator")
    with pytest.raises(ToolError, match=r"unknown tool 'ad' in group 'calculator'\. Did you mean 'add'\?"):
        calc.execute_tool("ad", {"a": 1, "b": 2})
    with pytest.raises(ToolError, match="tool 'add': bad arguments"):
        calc.execute_tool("add", {"a": 1, "c": 2})
    with pytest.raises(ToolError, match="unknown tool 'helper'"):
        calc.execute_tool("helper")
    groups = [calc, Text("text")]
    assert find_tool(groups, "upper").name == "text"
    with pytest.raises(ToolError, match="Available: add, mul, slow_neg, upper"):
        find_tool(groups, "lower")


def test_parse_tool_call():
    text = 'think <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    assert parse_tool_call(text) == ("add", {"a": 1, "b": 2})
    assert parse_tool_call('<tool_call>{"name": "mul", "arguments": "{\\"a\\": 3}"}</tool_call>') == ("mul", {"a": 3})
    assert parse_tool_call("no call here") is None
    with pytest.raises(ToolError, match="not valid JSON"):
        parse_tool_call("<tool_call>{name: add}</tool_call>")
    with pytest.raises(ToolError, match="must be an object like"):
        parse_tool_call('<tool_call>["add"]</tool_call>')
