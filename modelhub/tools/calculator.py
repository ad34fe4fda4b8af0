"""The calculator tool: arithmetic read with `ast`, never `eval`.

Only numbers and the operators + - * / // % ** (and unary + -) are accepted; names, calls,
attributes, subscripts, comparisons and every other node are refused. Powers are bounded so
that no expression makes a number too large to print.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from modelhub.tools import Tool, ToolContext, ToolError, tool_register

MAX_EXPRESSION_CHARS = 500
MAX_RESULT_BITS = 4096  # about 1,200 decimal digits

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}

Number = int | float


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; ToolError for anything else."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolError("the expression is not arithmetic") from None
    return _value(tree.body)


def _value(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError("only numbers are allowed")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_value(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _checked(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("the result is too large") from None
    raise ToolError(f"{type(node).__name__} is not allowed: only numbers and + - * / // % **")


def _check_power(base: Number, exponent: Number) -> None:
    if abs(base) > 1 and abs(exponent) * math.log2(abs(base)) > MAX_RESULT_BITS:
        raise ToolError("the result is too large")


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_BITS:
        raise ToolError("the result is too large")
    return value  # type: ignore[no-any-return]


def _format(value: Number) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def calculator(arguments: dict[str, Any], context: ToolContext) -> str:
    return _format(evaluate(arguments["expression"]))


CALCULATOR = tool_register(
    Tool(
        name="calculator",
        description="Evaluate an arithmetic expression: numbers, parentheses and + - * / // % **.",
        parameters={
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "for example (3 + 4) * 2.5",
                    "maxLength": MAX_EXPRESSION_CHARS,
                }
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
        function=calculator,
    )
)
