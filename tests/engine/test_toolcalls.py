"""The engine's tool-call parsing: Hermes tags in generated text become OpenAI tool_calls."""

from __future__ import annotations

import json

import pytest

from modelhub.engine.protocol import RequestError, ToolSpec, parse_chat_request
from modelhub.engine.toolcalls import Delta, ToolCallParser, normalise_messages
from modelhub.zoo import chat, tooluse

TOOLS = [tooluse.CALCULATOR, tooluse.SEARCH]
CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "3 + 4"}}\n</tool_call>'


def _spec(**kwargs: object) -> ToolSpec:
    return ToolSpec(TOOLS, {"calculator", "search"}, **kwargs)  # type: ignore[arg-type]


def _run(pieces: list[str], spec: ToolSpec | None = None) -> tuple[list[Delta], ToolCallParser]:
    """Feed generated text piece by piece, as the scheduler emits it, then finish."""
    parser = ToolCallParser(spec or _spec())
    deltas = [parser.feed(piece) for piece in pieces]
    deltas.append(parser.finish())
    return deltas, parser


def _tokens(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_it_turns_a_streamed_call_into_one_tool_call_delta() -> None:
    deltas, parser = _run(_tokens("Let me compute. " + CALL + "\n"))
    content = "".join(d.content for d in deltas)
    calls = [c for d in deltas for c in d.calls]
    assert content == "Let me compute. "
    assert len(calls) == 1 and calls == parser.calls
    assert calls[0]["index"] == 0 and calls[0]["type"] == "function"
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["function"]["name"] == "calculator"
    assert json.loads(calls[0]["function"]["arguments"]) == {"expression": "3 + 4"}


def test_it_never_streams_part_of_a_tag_as_content() -> None:
    deltas, _ = _run(list(CALL))  # one character at a time
    assert all("<" not in d.content for d in deltas)
    assert "".join(d.content for d in deltas) == ""


def test_it_numbers_several_calls() -> None:
    second = CALL.replace("calculator", "search").replace("expression", "query")
    _, parser = _run(_tokens(CALL + "\n" + second))
    assert [c["index"] for c in parser.calls] == [0, 1]
    assert [c["function"]["name"] for c in parser.calls] == ["calculator", "search"]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": </tool_call>',
        '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>',
        '<tool_call>\n{"name": "calculator", "arguments": [1, 2]}\n</tool_call>',
        '<tool_call>\n{"name": "calculator", "arguments": {"expr',  # cut off mid-call
    ],
    ids=["bad-json", "unknown-tool", "arguments-not-object", "unterminated"],
)
def test_it_passes_a_malformed_call_through_as_content(text: str) -> None:
    deltas, parser = _run(_tokens("Hmm " + text))
    assert parser.calls == []
    assert "".join(d.content for d in deltas) == "Hmm " + text


def test_it_accepts_a_complete_call_the_generation_ended_before_closing() -> None:
    _, parser = _run(_tokens(CALL.removesuffix("\n</tool_call>")))
    assert [c["function"]["name"] for c in parser.calls] == ["calculator"]


def test_it_keeps_text_that_only_looks_like_a_tag() -> None:
    deltas, parser = _run(["a <tool", "_cal", "culator> b", " <tool_c"])
    assert "".join(d.content for d in deltas) == "a <tool_calculator> b <tool_c"
    assert parser.calls == []


def test_it_completes_a_call_that_tool_choice_forced() -> None:
    spec = _spec(required=True, forced_name="search")
    _, parser = _run(_tokens(' "arguments": {"query": "bees"}}\n</tool_call>'), spec)
    assert parser.calls[0]["function"]["name"] == "search"
    assert json.loads(parser.calls[0]["function"]["arguments"]) == {"query": "bees"}


def _body(**extra: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_it_reads_tools_and_tool_choice_from_a_request() -> None:
    assert parse_chat_request(_body()).tools is None
    assert parse_chat_request(_body(tools=TOOLS, tool_choice="none")).tools is None
    auto = parse_chat_request(_body(tools=TOOLS)).tools
    assert auto is not None and auto.names == {"calculator", "search"} and not auto.required
    named = parse_chat_request(
        _body(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "search"}})
    ).tools
    assert named is not None and named.forced_name == "search"


@pytest.mark.parametrize(
    "extra",
    [
        {"tool_choice": "required"},
        {"tools": "calculator"},
        {"tools": [{"type": "function", "function": {}}]},
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        {"tools": TOOLS, "tool_choice": "sometimes"},
    ],
)
def test_it_refuses_malformed_tools(extra: dict[str, object]) -> None:
    with pytest.raises(RequestError) as caught:
        parse_chat_request(_body(**extra))
    assert caught.value.status == 400


def test_it_renders_a_tool_exchange_through_the_chat_template() -> None:
    """What the openai client sends back after a call: arguments as a JSON string, a tool turn."""
    body = _body(
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "What is 3 + 4?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "calculator", "arguments": '{"expression": "3 + 4"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "7"},
        ],
    )
    req = parse_chat_request(body)
    prompt = chat.render(normalise_messages(req.messages), True, TOOLS)
    assert prompt == (
        "<|system|>\nTools: calculator(expression), search(query)<|end|>\n"
        "<|user|>\nWhat is 3 + 4?<|end|>\n"
        f"<|assistant|>\n{CALL}<|end|>\n"
        "<|tool|>\n7<|end|>\n"
        "<|assistant|>\n"
    )
