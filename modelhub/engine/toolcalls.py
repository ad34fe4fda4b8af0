"""Tool calls in the local engine: the request's ``tools`` / ``tool_choice``, and the model's
tool-call text parsed into OpenAI ``tool_calls``.

The format is Hermes's (Qwen's, and what vLLM's ``hermes`` tool parser reads), so one model
directory serves the same calls from both engines::

    <tool_call>
    {"name": "calculator", "arguments": {"expression": "3 + 4"}}
    </tool_call>

The request side (``tools``, ``tool_choice``) is validated in ``protocol.parse_tools``.
``ToolCallParser`` takes the generated text delta by delta. Text outside the tags streams as
content (a possible start of ``<tool_call>`` is held back until it is one or is not); a call is
emitted whole, name and arguments in one delta, once its closing tag arrives (or the generation
ends right after its JSON). A call whose JSON is malformed, or names no tool the request offered,
is passed through as plain content: the client sees what the model wrote rather than a call that
would fail.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from modelhub.engine.protocol import ToolSpec

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


def prefix(spec: ToolSpec) -> str:
    """The start of the reply that ``tool_choice`` forces (the prompt is made to end with it)."""
    if spec.forced_name is not None:
        # No space after the comma: BPE merges it with the quote that follows, and a prompt
        # ending on a lone space token is one the model never saw there.
        return OPEN + "\n" + '{"name": ' + json.dumps(spec.forced_name) + ","
    return OPEN + "\n" if spec.required else ""


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _call(text: str, names: set[str]) -> dict[str, Any] | None:
    """The call in the JSON between the tags, or None when it is not a well-formed call."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("name") not in names:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"name": data["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}


def _partial_tag(text: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of OPEN."""
    for k in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if text.endswith(OPEN[:k]):
            return k
    return 0


@dataclass
class Delta:
    """What one piece of generated text adds: content and/or complete calls."""

    content: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI tool_calls delta items


class ToolCallParser:
    """Incremental Hermes tool-call parser (see module docstring). Feed, then ``finish``."""

    def __init__(self, spec: ToolSpec) -> None:
        self.names = spec.names
        self.buffer = prefix(spec)  # text not yet emitted
        self.inside = bool(self.buffer)
        self.calls: list[dict[str, Any]] = []

    def feed(self, text: str) -> Delta:
        self.buffer += text
        return self._drain(final=False)

    def finish(self) -> Delta:
        return self._drain(final=True)

    def _drain(self, final: bool) -> Delta:
        out = Delta()
        while self.buffer:
            if not self.inside:
                start = self.buffer.find(OPEN)
                if start < 0 and self.calls and not final and not self.buffer.strip():
                    break  # whitespace after a call: content only if more text follows
                if start < 0:
                    keep = 0 if final else _partial_tag(self.buffer)
                    out.content += self.buffer[: len(self.buffer) - keep]
                    self.buffer = self.buffer[len(self.buffer) - keep :]
                    break
                if self.buffer[:start].strip():  # whitespace before a call is layout
                    out.content += self.buffer[:start]
                self.buffer = self.buffer[start:]
                self.inside = True
            end = self.buffer.find(CLOSE)
            if end < 0 and not final:
                break
            raw = self.buffer[: end + len(CLOSE)] if end >= 0 else self.buffer
            body = raw[len(OPEN) : len(raw) - len(CLOSE) if end >= 0 else len(raw)]
            call = _call(body.strip(), self.names)
            if call is None:
                out.content += raw
            else:
                item = {
                    "index": len(self.calls),
                    "id": call_id(),
                    "type": "function",
                    "function": call,
                }
                self.calls.append(item)
                out.calls.append(item)
            self.buffer = self.buffer[len(raw) :]
            self.inside = False
        if final and self.calls and not out.content.strip():
            out.content = ""  # the newline after a call is not an answer
        return out


def normalise_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the chat template reads them: an assistant's calls as
    ``{"type": "function", "function": {"name", "arguments": <object>}}`` (the JSON string
    parsed, as vLLM does before templating), tool results as plain ``tool`` messages."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if not calls:
            out.append(message)
            continue
        rendered = []
        for call in calls:
            fn = call["function"]
            arguments = fn.get("arguments") or "{}"
            if isinstance(arguments, str):
                with contextlib.suppress(json.JSONDecodeError):
                    arguments = json.loads(arguments)
            rendered.append(
                {"type": "function", "function": {"name": fn["name"], "arguments": arguments}}
            )
        out.append({**message, "tool_calls": rendered})
    return out
