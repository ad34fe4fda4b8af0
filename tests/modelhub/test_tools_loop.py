"""The tool loop through the real pool: a Celery worker, the fake upstream's tool-calling models,
Redis streams read through the real websocket, PostgreSQL. Each failure ends in a stored,
visible error, never a hang (collect_frames fails the test when no terminal frame comes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from modelhub import services
from modelhub.models import Generation, GenerationStatus, ToolDocument
from tests.factories import EndpointFactory, ModelFactory
from tests.helpers import run_async, start_worker, stop_worker
from tests.streaming import assert_gapless, collect_frames, frames_text, new_session_key

pytestmark = [pytest.mark.django_db(transaction=True)]

QUEUE = "gen.tools-test"  # read by this module's worker only
CALLS_PER_TURN = 3
TOOLS = ["calculator", "search", "sleep"]


@pytest.fixture(scope="module")
def tools_worker(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """A worker with the test's `sleep` tool, a one-second tool time limit and three calls per
    answer."""
    wanted = {
        "LUDUS_TOOL_MODULES": "ludus_dev.tools",
        "LUDUS_TOOL_TIME_LIMIT": "1",
        "LUDUS_TOOL_CALLS_PER_TURN": str(CALLS_PER_TURN),
    }
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        proc, hostname = start_worker(queues=QUEUE, concurrency=4)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield hostname
    stop_worker(proc)


def _run(upstream: Any, served_name: str, prompt: str) -> tuple[Generation, list[dict[str, Any]]]:
    model = ModelFactory.create(served_name=served_name, queue=QUEUE, tools=TOOLS)
    EndpointFactory.create(model=model, base_url=upstream.base_url)
    key = new_session_key()
    generation = services.generations_create(
        requests=[(model, [{"role": "user", "content": prompt}])],
        params=services.generation_params(model=model, overrides={"max_tokens": 50}),
        session_key=key,
        tools=TOOLS,
    )[0]
    frames = run_async(collect_frames(key, str(generation.id), timeout=30))
    assert_gapless(frames)
    generation.refresh_from_db()
    return generation, frames


def _tool_frames(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] in {"tool_call", "tool_result"}]


def test_it_runs_the_calculator_and_answers_with_its_result(tools_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    generation, frames = _run(upstream, "fake-tools", "What is 12 * (3 + 4)?")
    assert frames[-1]["type"] == "done"
    assert _tool_frames(frames) == [
        {
            "type": "tool_call",
            "id": str(generation.id),
            "seq": frames[0]["seq"],
            "call": "call_1",
            "name": "calculator",
            "arguments": '{"expression": "12 * (3 + 4)"}',
        },
        {
            "type": "tool_result",
            "id": str(generation.id),
            "seq": frames[1]["seq"],
            "call": "call_1",
            "result": "84",
            "error": "",
        },
    ]
    assert generation.status == GenerationStatus.DONE
    assert generation.text == frames_text(frames) == "The tool said: 84 "
    [call] = generation.tool_calls
    assert call["call"] == "call_1" and call["id"] == "call_fake0"  # the upstream's id, stored
    assert call["name"] == "calculator" and call["result"] == "84" and call["error"] == ""
    assert call["arguments"] == '{"expression": "12 * (3 + 4)"}'
    assert call["duration_ms"] is not None and call["duration_ms"] >= 0
    # Nothing in the frames tells the serving stack apart: no upstream id, no timing.
    assert "call_fake" not in str(frames) and "duration" not in str(frames)


def test_it_searches_the_documents_admins_loaded(tools_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    ToolDocument.objects.create(title="Ludus", text="Ludus ranks chat models in an arena.")
    ToolDocument.objects.create(title="Bread", text="Bread needs flour, water and yeast.")
    generation, frames = _run(upstream, "fake-tools-search", "what does bread need")
    assert frames[-1]["type"] == "done"
    [call] = generation.tool_calls
    assert call["name"] == "search"
    assert call["result"].startswith("Bread: Bread needs flour") and "Ludus" not in call["result"]


@pytest.mark.parametrize(
    ("served_name", "error"),
    [
        ("fake-tools-malformed", "the arguments are not valid JSON"),
        ("fake-tools-unknown", "there is no tool named 'teleport'"),
        ("fake-tools-schema", "the arguments do not match the tool's schema"),
        ("fake-tools-slow", "the tool took longer than 1 s"),
    ],
)
def test_it_tells_the_model_what_was_wrong_with_a_call(  # type: ignore[no-untyped-def]
    tools_worker, upstream, served_name: str, error: str
) -> None:
    generation, frames = _run(upstream, served_name, "go")
    [_, result] = _tool_frames(frames)
    assert result["error"].startswith(error)
    assert frames[-1]["type"] == "done"
    # The model read the error as the tool's answer, and answered.
    assert generation.text.startswith(f"The tool said: Error: {error}")
    [call] = generation.tool_calls
    assert call["error"].startswith(error) and call["result"] == ""


def test_it_ends_an_answer_that_calls_tools_past_the_limit(tools_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    generation, frames = _run(upstream, "fake-tools-endless", "go")
    assert frames[-1]["type"] == "error"
    assert frames[-1]["message"] == (
        f"The model asked for more than {CALLS_PER_TURN} tool calls in one answer."
    )
    assert len(_tool_frames(frames)) == 2 * CALLS_PER_TURN
    assert generation.status == GenerationStatus.ERROR
    assert generation.error == frames[-1]["message"]
    assert [c["result"] for c in generation.tool_calls] == ["2"] * CALLS_PER_TURN + [""]
    assert generation.tool_calls[-1]["error"] == "over the call limit"


def test_it_offers_no_tools_to_a_generation_given_none(tools_worker, upstream) -> None:  # type: ignore[no-untyped-def]
    model = ModelFactory.create(served_name="fake-tools", queue=QUEUE, tools=TOOLS)
    EndpointFactory.create(model=model, base_url=upstream.base_url)
    key = new_session_key()
    generation = services.generation_create(
        model=model, messages=[{"role": "user", "content": "2 + 2"}], session_key=key
    )
    frames = run_async(collect_frames(key, str(generation.id), timeout=30))
    # The fake asks for the calculator all the same; with no tools offered, nothing runs.
    assert not _tool_frames(frames) and frames[-1]["type"] == "done"
    generation.refresh_from_db()
    assert generation.tool_calls == [] and generation.finish_reason == "tool_calls"
