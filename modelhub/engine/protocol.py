"""OpenAI chat-completions request parsing and response shapes, kept free of any model code.

``parse_chat_request`` validates a decoded JSON body and raises ``RequestError`` (HTTP 400 unless
stated) with an OpenAI-style message; everything downstream can trust the ``ChatRequest`` it gets.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

MAX_STOP_SEQUENCES = 4
MAX_IMAGE_BYTES = 10 * 1024 * 1024


class RequestError(Exception):
    """A request Ludus refuses; ``status`` is the HTTP status, ``param`` the offending field."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code
        self.type = type_

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # vLLM's extension: keep going past the end-of-turn token (benchmarks use it for fixed lengths).
    ignore_eos: bool = False


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]  # content normalised: str, or list of text/image parts
    images: list[Image.Image]
    sampling: SamplingParams
    stream: bool
    include_usage: bool
    tools: ToolSpec | None = None  # None: the reply is plain text


def _number(body: dict[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise RequestError(f"'{key}' must be a number between {lo} and {hi}", param=key)
    return float(value)


def decode_image_url(url: str) -> Image.Image:
    """Decode a ``data:image/...;base64,`` URL. Remote URLs are refused: the engine is offline."""
    if not url.startswith("data:"):
        raise RequestError(
            "only data: URLs are supported for images (this engine does not fetch URLs)",
            param="messages",
        )
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise RequestError("image data URLs must be base64-encoded", param="messages")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError("image data URL is not valid base64", param="messages") from exc
    if len(raw) > MAX_IMAGE_BYTES:
        raise RequestError("image is too large", param="messages")
    try:
        img = Image.open(io.BytesIO(raw))
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise RequestError("image data is not a readable image", param="messages") from exc
    return img.convert("RGB")


def _text(content: Any, i: int) -> str:
    """A message's content as plain text (tool results and calling turns carry no images)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise RequestError(f"messages[{i}].content must be text", param="messages")


def _calls(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    calls = msg["tool_calls"]
    if not isinstance(calls, list) or not all(
        isinstance(c, dict)
        and isinstance(c.get("function"), dict)
        and isinstance(c["function"].get("name"), str)
        for c in calls
    ):
        raise RequestError(
            f"messages[{i}].tool_calls must be an array of function calls", param="messages"
        )
    return calls


def _messages(raw: Any) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    messages: list[dict[str, Any]] = []
    images: list[Image.Image] = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise RequestError(f"messages[{i}] must be an object", param="messages")
        role = msg.get("role")
        if role == "developer":  # newer OpenAI clients send system prompts under this role
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}].role is not supported: {role!r}", param="messages")
        content = msg.get("content")
        if content is None and role == "assistant":
            content = ""
        if role == "assistant" and msg.get("tool_calls"):
            messages.append(
                {"role": role, "content": _text(content, i), "tool_calls": _calls(msg, i)}
            )
            continue
        if role == "tool":
            messages.append({"role": role, "content": _text(content, i)})
            continue
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise RequestError(f"messages[{i}].content must be a string or array", param="messages")
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                image_url = part.get("image_url")
                url = image_url.get("url") if isinstance(image_url, dict) else image_url
                if not isinstance(url, str):
                    raise RequestError("image_url.url must be a string", param="messages")
                images.append(decode_image_url(url))
                parts.append({"type": "image"})
            else:
                raise RequestError(f"unsupported content part in messages[{i}]", param="messages")
        messages.append({"role": role, "content": parts})
    return messages, images


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a chat-completions body. Raises RequestError on anything malformed."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required", param="model")
    messages, images = _messages(body.get("messages"))
    n = body.get("n", 1)
    if n not in (1, None):
        raise RequestError("only n=1 is supported", param="n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise RequestError("'max_tokens' must be a positive integer", param="max_tokens")
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise RequestError("'stop' must be a string or an array of strings", param="stop")
    if len(stops) > MAX_STOP_SEQUENCES or any(not s for s in stops):
        raise RequestError("at most 4 non-empty stop sequences", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("'seed' must be an integer", param="seed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", param="stream")
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise RequestError("'ignore_eos' must be a boolean", param="ignore_eos")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    return ChatRequest(
        model=model,
        messages=messages,
        images=images,
        sampling=SamplingParams(
            temperature=_number(body, "temperature", 0.0, 2.0, 1.0),
            top_p=_number(body, "top_p", 0.0, 1.0, 1.0) or 1.0,
            max_tokens=max_tokens,
            stop=stops,
            seed=seed,
            ignore_eos=ignore_eos,
        ),
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        tools=parse_tools(body),
    )


@dataclass
class ToolSpec:
    """The request's tools and what ``tool_choice`` demands."""

    tools: list[dict[str, Any]]  # OpenAI's {"type": "function", "function": {...}} objects
    names: set[str]
    required: bool = False  # tool_choice "required": the reply starts with a call
    forced_name: str | None = None  # tool_choice naming a function: the reply calls it


def parse_tools(body: dict[str, Any]) -> ToolSpec | None:
    """Validate ``tools`` and ``tool_choice``; None when the reply is plain text.

    ``tool_choice``: "auto" (default with tools), "none" (tools ignored), "required" (the reply
    starts with a call) or ``{"type": "function", "function": {"name": N}}`` (starts calling N).
    """
    raw = body.get("tools")
    choice = body.get("tool_choice")
    if raw is None:
        if choice not in (None, "none"):
            raise RequestError("'tool_choice' needs 'tools'", param="tool_choice")
        return None
    if not isinstance(raw, list):
        raise RequestError("'tools' must be an array", param="tools")
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(raw):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise RequestError(f"tools[{i}] must be a function tool", param="tools")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RequestError(f"tools[{i}].function.name is required", param="tools")
        params = fn.get("parameters", {})
        if not isinstance(params, dict):
            raise RequestError(f"tools[{i}].function.parameters must be an object", param="tools")
        tools.append({"type": "function", "function": {**fn, "parameters": params}})
    names = {t["function"]["name"] for t in tools}
    if choice in (None, "auto"):
        return ToolSpec(tools, names) if tools else None
    if choice == "none":
        return None
    if not tools:
        raise RequestError("'tool_choice' needs at least one tool", param="tool_choice")
    if choice == "required":
        return ToolSpec(tools, names, required=True)
    fn = choice.get("function") if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise RequestError(
            "'tool_choice' must be 'none', 'auto', 'required' or a named function",
            param="tool_choice",
        )
    if name not in names:
        raise RequestError(f"tool_choice names an unknown tool: {name!r}", param="tool_choice")
    return ToolSpec(tools, names, required=True, forced_name=name)


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def chunk(
    cid: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    with_usage_field: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``usage: null`` appears when the client asked for usage."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "ludus-local",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if with_usage_field:
        body["usage"] = None
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def now() -> int:
    return int(time.time())
