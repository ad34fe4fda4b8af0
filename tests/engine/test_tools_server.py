"""Tool calls through the real engine: the official openai client against the zoo's tool model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from modelhub.zoo import toolcheck, tooluse
from modelhub.zoo.serving import engine_server

MODEL = "zoo-llama-tools"
TOOLS: Any = [tooluse.CALCULATOR, tooluse.SEARCH]  # the typed params the client declares


@pytest.fixture(scope="module")
def engine_url(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    with engine_server(zoo_dir, log) as url:
        yield url


@pytest.fixture
def client(engine_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=engine_url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def cases(zoo_dir: Path) -> list[tooluse.Case]:
    return tooluse.read_cases(zoo_dir / tooluse.TEST_SET)


def _question(cases: list[tooluse.Case], category: str) -> str:
    return str(next(c for c in cases if c["category"] == category)["messages"][0]["content"])


def test_it_streams_a_tool_call_as_tool_call_deltas(
    client: openai.OpenAI, cases: list[tooluse.Case]
) -> None:
    stream: Any = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": _question(cases, "arithmetic")}],
        tools=TOOLS,
        temperature=0.0,
        stream=True,
    )
    content, names, arguments, finish = "", [], "", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            assert call.index == 0
            if call.function and call.function.name:
                names.append(call.function.name)
            arguments += (call.function.arguments or "") if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert "<tool_call>" not in content and "</tool_call>" not in content
    assert names == ["calculator"]
    assert set(json.loads(arguments)) == {"expression"}
    assert finish == "tool_calls"


def test_it_answers_with_the_named_tool_without_streaming(
    client: openai.OpenAI, cases: list[tooluse.Case]
) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": _question(cases, "lookup")}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "search"}},
        temperature=0.0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "search"
    assert isinstance(json.loads(call.function.arguments).get("query"), str)


def test_it_answers_in_text_after_a_tool_result(
    client: openai.OpenAI, cases: list[tooluse.Case]
) -> None:
    messages: list[Any] = [{"role": "user", "content": _question(cases, "arithmetic")}]
    first = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
        tool_choice="required",
        temperature=0.0,
    ).choices[0]
    (call,) = first.message.tool_calls or []
    messages += [
        first.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "42"},
    ]
    second = client.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, temperature=0.0, max_tokens=40
    ).choices[0]
    assert second.message.tool_calls is None
    assert second.message.content
    assert second.finish_reason in ("stop", "length")


def test_it_refuses_tool_choice_without_tools(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            tool_choice="required",
        )
    assert "tool_choice" in str(caught.value)


def test_it_calls_the_calculator_for_most_held_out_arithmetic_questions(
    engine_url: str, zoo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The function-calling check from its command line, against the served tool model."""
    code = toolcheck.main(
        [
            "--base-url",
            engine_url + "/v1",
            "--model",
            MODEL,
            "--cases",
            str(zoo_dir / tooluse.TEST_SET),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["cases"] == len(tooluse.read_cases(zoo_dir / tooluse.TEST_SET))
    assert set(result["by_category"]) == {"arithmetic", "lookup"}
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["called_by_category"]["arithmetic"] > 0.5
