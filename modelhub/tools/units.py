"""The unit conversion tool (pint's registry of units; its unit parser, never Python's eval)."""

from __future__ import annotations

import functools
from typing import Any

import pint

from modelhub.tools import Tool, ToolContext, ToolError, tool_register


@functools.cache
def _units() -> pint.UnitRegistry:
    return pint.UnitRegistry()  # a quarter of a second to build: once per process, on first use


def convert(arguments: dict[str, Any], context: ToolContext) -> str:
    units = _units()
    try:
        quantity = units.Quantity(arguments["value"], units.parse_units(arguments["from"]))
        converted = quantity.to(units.parse_units(arguments["to"]))
    except pint.errors.DimensionalityError:
        raise ToolError(f"cannot convert {arguments['from']} to {arguments['to']}") from None
    except (pint.errors.PintError, AttributeError, TypeError, ValueError, SyntaxError):
        raise ToolError("unknown unit") from None
    return f"{converted.magnitude:.6g} {arguments['to']}"


CONVERT = tool_register(
    Tool(
        name="convert",
        description="Convert a quantity between units (length, mass, temperature, speed, ...).",
        parameters={
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "from": {"type": "string", "maxLength": 40, "description": "e.g. km, lb, degF"},
                "to": {"type": "string", "maxLength": 40, "description": "e.g. mile, kg, degC"},
            },
            "required": ["value", "from", "to"],
            "additionalProperties": False,
        },
        function=convert,
    )
)
