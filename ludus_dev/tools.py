"""A tool for tests of the tool loop's time limit: `sleep` waits as long as it is asked
(settings.TOOL_MODULES names this module where a test wants it; never in production)."""

from __future__ import annotations

import time
from typing import Any

from modelhub.tools import Tool, ToolContext, tool_register


def sleep(arguments: dict[str, Any], context: ToolContext) -> str:
    time.sleep(arguments["seconds"])
    return "awake"


SLEEP = tool_register(
    Tool(
        name="sleep",
        description="Wait this many seconds.",
        parameters={
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 60}},
            "required": ["seconds"],
        },
        function=sleep,
    )
)
