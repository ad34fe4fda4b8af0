"""Tools a model may call: each a registered Python callable with a JSON schema.

A generation lists the tools it offers (Generation.tools, names from this registry); the worker
sends their specs upstream (`tool_specs`) and runs each call the model makes with `tool_call_run`:
the tool must be offered, its arguments JSON that matches the schema (jsonschema), and it must
finish within the time limit. Every refusal is an `Outcome` with an error the model reads, never
an exception, so a bad call costs the answer one round trip, not the answer.

Tools run in this process's own threads: only code registered here runs, never code a user or
a model wrote. A call that runs past its limit is abandoned (its thread finishes on its own; the
tools here bound their work so that it does). More tools come from the modules named in
settings.TOOL_MODULES, imported on first use.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from django.core.exceptions import ValidationError

log = logging.getLogger(__name__)


class ToolError(Exception):
    """A refusal a tool explains to the model (its message is sent back as the call's error)."""


@dataclass(frozen=True)
class ToolContext:
    """What a call may read besides its arguments: the conversation sent to the model."""

    messages: Sequence[dict[str, Any]] = ()


@dataclass
class ToolOutput:
    """A tool's answer: text for the model, and an image (a data URL) that follows it."""

    text: str
    image_url: str | None = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[[dict[str, Any], ToolContext], str | ToolOutput]
    needs_image: bool = False  # offered only to vision models, on a prompt with an image

    def spec(self) -> dict[str, Any]:
        """The tool as the OpenAI chat protocol's `tools` list names it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass
class Outcome:
    """How one call went: its result, or the error the model is told; how long it ran."""

    result: str = ""
    error: str = ""
    image_url: str | None = None
    duration_ms: float = 0.0
    arguments: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        """The `tool` message's content."""
        return f"Error: {self.error}" if self.error else self.result


_tools: dict[str, Tool] = {}
_extras_loaded = False
_extras_lock = threading.Lock()
# Calls run here, bounded; a call waiting for a thread counts against its own time limit.
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="ludus-tool")
RESULT_LIMIT = 4000  # characters of a result sent back to the model


def tool_register(tool: Tool) -> Tool:
    jsonschema.Draft202012Validator.check_schema(tool.parameters)
    _tools[tool.name] = tool
    return tool


def registry() -> dict[str, Tool]:
    """Every registered tool by name, the settings' extra modules imported on first use."""
    global _extras_loaded
    if not _extras_loaded:
        with _extras_lock:
            if not _extras_loaded:
                from django.conf import settings

                for module in getattr(settings, "TOOL_MODULES", []):
                    importlib.import_module(module)
                _extras_loaded = True
    return _tools


def tool_names() -> list[str]:
    return sorted(registry())


def validate_tool_names(value: Sequence[str]) -> None:
    """ValidationError unless every name is a registered tool (a model's `tools`)."""
    unknown = sorted(set(value) - set(tool_names()))
    if unknown:
        raise ValidationError(
            f"Unknown tools: {', '.join(unknown)}. Choose from {', '.join(tool_names())}."
        )


def tool_specs(names: Sequence[str]) -> list[dict[str, Any]]:
    """The `tools` list of a request offering these tools (unknown names are left out)."""
    tools = registry()
    return [tools[name].spec() for name in names if name in tools]


def tools_offered(*, enabled: Sequence[str], wanted: Sequence[str], vision: bool) -> list[str]:
    """The tools, in `wanted`'s order, that a model with `enabled` tools gets: registered ones,
    and an image tool only on a vision prompt."""
    tools = registry()
    return [
        name
        for name in wanted
        if name in enabled and name in tools and (vision or not tools[name].needs_image)
    ]


def arguments_shown(arguments: str) -> str:
    """A call's arguments as a browser sees them: valid JSON in one canonical form (the spacing
    and key order an engine writes would tell engines apart), anything else as sent."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, ensure_ascii=False)
    except ValueError:
        return arguments[:2000]


def tool_call_run(
    *,
    name: str,
    arguments: str,
    offered: Sequence[str],
    context: ToolContext,
    timeout_s: float,
) -> Outcome:
    """Run one call the model made. Never raises: each refusal is an Outcome with an error."""
    started = time.monotonic()
    outcome = _run(name, arguments, offered, context, timeout_s)
    outcome.duration_ms = round((time.monotonic() - started) * 1000, 1)
    if len(outcome.result) > RESULT_LIMIT:
        outcome.result = outcome.result[:RESULT_LIMIT] + " [cut]"
    return outcome


def _run(
    name: str, arguments: str, offered: Sequence[str], context: ToolContext, timeout_s: float
) -> Outcome:
    tool = registry().get(name)
    if tool is None or name not in offered:
        return Outcome(error=f"there is no tool named {name[:100]!r}")
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return Outcome(error=f"the arguments are not valid JSON ({exc.msg})")
    if not isinstance(parsed, dict):
        return Outcome(error="the arguments must be a JSON object")
    try:
        jsonschema.validate(parsed, tool.parameters, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        detail = f"{where}: {exc.message}" if where else exc.message
        return Outcome(error=f"the arguments do not match the tool's schema: {detail[:300]}")
    future = _executor.submit(tool.function, parsed, context)
    try:
        value = future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        future.cancel()  # still queued: never runs; running: finishes unheard
        return Outcome(error=f"the tool took longer than {timeout_s:g} s", arguments=parsed)
    except ToolError as exc:
        return Outcome(error=str(exc)[:500], arguments=parsed)
    except Exception:
        log.exception("tool %s failed", name)
        return Outcome(error="the tool failed", arguments=parsed)
    if isinstance(value, ToolOutput):
        return Outcome(result=value.text, image_url=value.image_url, arguments=parsed)
    return Outcome(result=str(value), arguments=parsed)


# The built-in tools register themselves on import.
from modelhub.tools import calculator, dates, image, search, units  # noqa: E402, F401
