"""The date tool: weekdays, days between two dates, a date plus some days."""

from __future__ import annotations

import datetime
from typing import Any

from modelhub.tools import Tool, ToolContext, ToolError, tool_register


def _day(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ToolError(f"{text[:40]!r} is not a date (YYYY-MM-DD)") from None


def date(arguments: dict[str, Any], context: ToolContext) -> str:
    start = _day(arguments["date"])
    if "until" in arguments:
        end = _day(arguments["until"])
        return f"{(end - start).days} days from {start} ({start:%A}) to {end} ({end:%A})"
    try:
        result = start + datetime.timedelta(days=arguments.get("add_days", 0))
    except OverflowError:
        raise ToolError("the date is out of range") from None
    return f"{result} ({result:%A})"


DATE = tool_register(
    Tool(
        name="date",
        description="Date arithmetic: the weekday of a date, the date some days later, or the "
        "number of days until another date.",
        parameters={
            "type": "object",
            "properties": {
                "date": {"type": "string", "description": "YYYY-MM-DD"},
                "add_days": {"type": "integer", "minimum": -1000000, "maximum": 1000000},
                "until": {"type": "string", "description": "YYYY-MM-DD"},
            },
            "required": ["date"],
            "additionalProperties": False,
        },
        function=date,
    )
)
