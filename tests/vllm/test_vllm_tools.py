"""vLLM's ``hermes`` tool-call parser on the zoo's tool model: vLLM started by the supervisor with
the parser the model row names, its tool calls read with the openai client (streamed and not),
the function-calling check against it, and the pool's tool loop on a vLLM model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from modelhub.supervisor import ServerSpec, Supervisor, vllm_command
from modelhub.zoo import chat, toolcheck, tooluse
from modelhub.zoo.serving import free_port

pytestmark = pytest.mark.vllm

MODEL = "zoo-llama-tools"
TOOLS: Any = [tooluse.CALCULATOR, tooluse.SEARCH]


@pytest.fixture(scope="module")
def vllm_tools(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    spec = ServerSpec(
        name=MODEL,
        model_dir=zoo_dir / MODEL,
        port=free_port(),
        max_model_len=256,
        tool_call_parser=chat.VLLM_TOOL_PARSER,
    )
    log = tmp_path_factory.mktemp("vllm-tools") / "vllm.log"
    sup = Supervisor(spec, vllm_command, log_path=log, backoff_s=1.0).start()
    try:
        sup.wait_healthy(timeout=240)
    except TimeoutError:
        sup.stop()
        pytest.fail("vLLM did not become healthy:\n" + log.read_text()[-4000:])
    yield sup
    sup.stop()


@pytest.fixture(scope="module")
def cases(zoo_dir: Path) -> list[tooluse.Case]:
    return tooluse.read_cases(zoo_dir / tooluse.TEST_SET)


def _client(sup: Supervisor) -> openai.OpenAI:
    return openai.OpenAI(base_url=sup.spec.base_url + "/v1", api_key="x", max_retries=0, timeout=60)


def _question(cases: list[tooluse.Case], category: str) -> str:
    return str(next(c for c in cases if c["category"] == category)["messages"][0]["content"])


def test_it_streams_tool_call_deltas_parsed_by_vllms_hermes_parser(
    vllm_tools: Supervisor, cases: list[tooluse.Case]
) -> None:
    stream: Any = _client(vllm_tools).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": _question(cases, "arithmetic")}],
        tools=TOOLS,
        temperature=0.0,
        max_tokens=64,
        stream=True,
    )
    content, names, arguments, finish = "", [], "", None
    for chunk in stream:
        if not chunk.choices:
            continue
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


def test_it_answers_a_lookup_with_a_search_call_without_streaming(
    vllm_tools: Supervisor, cases: list[tooluse.Case]
) -> None:
    reply = _client(vllm_tools).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": _question(cases, "lookup")}],
        tools=TOOLS,
        temperature=0.0,
        max_tokens=64,
    )
    choice = reply.choices[0]
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "search"
    assert isinstance(json.loads(call.function.arguments).get("query"), str)
    assert "<tool_call>" not in (choice.message.content or "")


def test_it_calls_a_tool_for_most_held_out_questions(
    vllm_tools: Supervisor, cases: list[tooluse.Case]
) -> None:
    result = toolcheck.evaluate(vllm_tools.spec.base_url + "/v1", MODEL, cases)
    assert result["cases"] == len(cases)
    assert result["called_by_category"]["arithmetic"] > 0.5
    assert result["called_by_category"]["lookup"] > 0.5


@pytest.mark.django_db(transaction=True)
def test_it_runs_the_tool_loop_on_a_vllm_model_through_the_pool(
    vllm_tools: Supervisor, celery_worker: str, cases: list[tooluse.Case]
) -> None:
    from modelhub import services
    from modelhub.models import Engine, GenerationStatus
    from tests.factories import EndpointFactory, ModelFactory
    from tests.helpers import run_async
    from tests.streaming import collect_frames, new_session_key

    model = ModelFactory.create(
        name="vllm-tools",
        served_name=MODEL,
        engine=Engine.VLLM,
        tools=["calculator"],
        tool_call_parser=chat.VLLM_TOOL_PARSER,
    )
    EndpointFactory.create(model=model, base_url=vllm_tools.spec.base_url + "/v1")
    key = new_session_key()
    generation = services.generations_create(
        requests=[(model, [{"role": "user", "content": _question(cases, "arithmetic")}])],
        params=services.generation_params(model=model, overrides={"max_tokens": 48}),
        session_key=key,
        tools=["calculator"],
    )[0]
    frames = run_async(collect_frames(key, str(generation.id), timeout=120))
    calls = [f for f in frames if f["type"] == "tool_call"]
    assert calls and calls[0]["name"] == "calculator"
    generation.refresh_from_db()
    # Done, or a stored error when a tiny model keeps calling past the per-turn limit: never a hang.
    assert frames[-1]["type"] in ("done", "error")
    assert generation.status in (GenerationStatus.DONE, GenerationStatus.ERROR)
    stored = generation.tool_calls[0]
    assert stored["name"] == "calculator" and "expression" in json.loads(stored["arguments"])
    assert stored["result"] or stored["error"]  # the calculator ran (or refused the expression)
