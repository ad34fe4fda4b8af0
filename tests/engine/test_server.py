"""The local engine as users see it: the official openai client against a server subprocess."""

from __future__ import annotations

import base64
import io
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from modelhub.zoo import vision
from modelhub.zoo.serving import engine_server
from tests.prometheus import metric_types, metric_value

TEXT_MODEL = "zoo-llama-l"
VISION_MODEL = "zoo-llava-s"


@pytest.fixture(scope="module")
def engine_url(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    with engine_server(zoo_dir, log) as url:
        yield url


@pytest.fixture
def client(engine_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=engine_url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _metric(engine_url: str, name: str, model: str = TEXT_MODEL, **labels: str) -> float:
    text = httpx.get(engine_url + "/metrics").text
    return metric_value(text, name, model=model, **labels) or 0.0


def _data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_it_lists_every_zoo_model(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {TEXT_MODEL, "zoo-llama-xs", VISION_MODEL} <= ids


def test_it_streams_a_chat_like_openai(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=TEXT_MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=12,
        temperature=0.8,
        seed=0,
        # Quick-zoo models may end a reply at once; the stream's shape is what is tested here.
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(deltas)
    assert finishes == ["length"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens > 0
    assert chunks[-1].usage.completion_tokens == 12


def test_it_answers_without_streaming_and_honours_seed(client: openai.OpenAI) -> None:
    def ask(seed: int) -> str:
        reply = client.chat.completions.create(
            model=TEXT_MODEL,
            messages=[{"role": "user", "content": "Tell me a short story about a small cat."}],
            max_tokens=16,
            temperature=1.0,
            top_p=0.95,
            seed=seed,
        )
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage is not None
        return reply.choices[0].message.content or ""

    assert ask(1) == ask(1)
    assert len({ask(s) for s in range(2, 6)}) > 1


def test_it_honours_max_tokens_and_stop(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="zoo-llama-xs",
        messages=[{"role": "user", "content": "Hello!"}],
        max_tokens=3,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 3
    full = (
        client.chat.completions.create(
            model=TEXT_MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=20,
            temperature=0,
        )
        .choices[0]
        .message.content
        or ""
    )
    assert len(full) > 2
    stop = full[1:3]
    cut = client.chat.completions.create(
        model=TEXT_MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=20,
        temperature=0,
        stop=[stop],
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.index(stop)]


def test_it_returns_openai_errors(client: openai.OpenAI, engine_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=TEXT_MODEL, messages=[])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=TEXT_MODEL, messages=[{"role": "user", "content": "x"}], temperature=5
        )
    raw = httpx.post(engine_url + "/v1/chat/completions", content=b"{not json")
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"


def _colour_question(image: Image.Image) -> list[Any]:
    """One user turn: the image as a data: URL, then the question about its colour."""
    content = [
        {"type": "image_url", "image_url": {"url": _data_url(image)}},
        {"type": "text", "text": "What colour is the shape?"},
    ]
    return [{"role": "user", "content": content}]


def test_it_refuses_images_for_text_models(client: openai.OpenAI) -> None:
    image = vision.draw_scene(vision.ShapeScene("red", "square", 1), random.Random(0))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=TEXT_MODEL,
            messages=_colour_question(image),
        )


def test_it_batches_concurrent_requests(client: openai.OpenAI, engine_url: str) -> None:
    texts: list[str] = []

    def run(i: int) -> None:
        stream = client.chat.completions.create(
            model="zoo-llama-m",
            messages=[{"role": "user", "content": f"Count from {i} to {i + 5}."}],
            max_tokens=48,
            temperature=1.0,
            seed=i,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(texts) == 8
    assert _metric(engine_url, "ludus_engine_batch_size_max", "zoo-llama-m") > 1
    assert _metric(engine_url, "ludus_engine_requests_in_flight", "zoo-llama-m") == 0


def test_it_stops_decoding_when_the_client_disconnects(engine_url: str) -> None:
    model = "zoo-llama-s"
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a short story about an old robot."}],
        "max_tokens": 400,
        "temperature": 1.0,
        "stream": True,
        "ignore_eos": True,
    }
    before = _metric(engine_url, "ludus_engine_generation_tokens_total", model)
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", engine_url + "/v1/chat/completions", json=body) as response,
    ):
        lines = response.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert got[0].startswith("data: ")
    deadline = time.monotonic() + 10
    cancelled = 0.0
    while time.monotonic() < deadline:
        cancelled = _metric(
            engine_url, "ludus_engine_requests_total", model, finish_reason="cancelled"
        )
        if cancelled:
            break
        time.sleep(0.1)
    assert cancelled == 1
    assert _metric(engine_url, "ludus_engine_requests_in_flight", model) == 0
    generated = _metric(engine_url, "ludus_engine_generation_tokens_total", model) - before
    assert generated < 400


def test_it_answers_about_the_image_it_is_shown(client: openai.OpenAI) -> None:
    # Four squares of each colour, drawn at twice the model's input size (the processor scales
    # them, as it does a user's upload). The build trains until the model names the colour it reads
    # worst on nine unseen images in ten, so one image may be misread; a model that ignored the
    # image would give the same answer for both colours.
    answers: dict[str, list[str]] = {"red": [], "blue": []}
    for colour, replies in answers.items():
        for seed in range(4):
            image = vision.draw_scene(
                vision.ShapeScene(colour, "square", 1), random.Random(seed), 64
            )
            stream = client.chat.completions.create(
                model=VISION_MODEL,
                messages=_colour_question(image),
                temperature=0,
                max_tokens=12,
                stream=True,
            )
            replies.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    for colour, replies in answers.items():
        assert sum(colour in reply for reply in replies) >= 3, answers


def test_it_reports_health_and_metrics(engine_url: str) -> None:
    health = httpx.get(engine_url + "/health").json()
    assert health["status"] == "ok"
    metrics = httpx.get(engine_url + "/metrics").text
    types = metric_types(metrics)
    assert types["ludus_engine_generation_tokens"] == "counter"
    assert types["vllm:num_requests_running"] == "gauge"
    assert types["vllm:num_requests_waiting"] == "gauge"


@pytest.mark.django_db(transaction=True)
def test_it_streams_a_zoo_model_through_the_pool_and_a_websocket(
    engine_url: str, celery_worker: str
) -> None:
    """A zoo model registered as an engine=local model: generation via the Celery pool, read back
    through the real ASGI websocket, stored in PostgreSQL."""
    from modelhub.models import Engine
    from tests.factories import EndpointFactory, ModelFactory
    from tests.streaming import stream_and_check

    model = ModelFactory.create(name="local-zoo", served_name=TEXT_MODEL, engine=Engine.LOCAL)
    EndpointFactory.create(model=model, base_url=engine_url + "/v1")
    stream_and_check(model, {"max_tokens": 24, "temperature": 0})
