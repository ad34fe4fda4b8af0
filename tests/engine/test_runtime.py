"""The batching scheduler in-process: batched greedy decoding equals one-at-a-time generate()."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from modelhub.engine.metrics import Metrics
from modelhub.engine.protocol import SamplingParams
from modelhub.engine.runtime import Event, LoadedModel, Scheduler, Sequence, _held_back

PROMPTS = [
    "Hi",
    "What is the capital of France?",
    "Tell me a short story about a curious girl who lived in a big city.",
    "Count from 3 to 9.",
]


def _run_together(lm: LoadedModel, prompts: list[str], max_tokens: int) -> list[list[int]]:
    sched = Scheduler(lm, Metrics())
    done = [threading.Event() for _ in prompts]
    seqs = []
    for i, prompt in enumerate(prompts):
        ids, _ = lm.encode([{"role": "user", "content": prompt}], [])

        def emit(event: Event, i: int = i) -> None:
            if event.finish:
                done[i].set()

        seqs.append(
            Sequence(
                prompt_ids=ids,
                sampling=SamplingParams(temperature=0.0, ignore_eos=True),
                max_tokens=max_tokens,
                emit=emit,
            )
        )
    for seq in seqs:  # submitted back to back: they join the batch at different steps
        sched.submit(seq)
    for event in done:
        assert event.wait(60)
    sched.shutdown()
    return [seq.generated for seq in seqs]


def test_it_decodes_a_padded_batch_exactly_like_generate(zoo_dir: Path) -> None:
    torch.set_num_threads(1)
    lm = LoadedModel("zoo-llama-m", zoo_dir / "zoo-llama-m", torch.device("cpu"))
    batched = _run_together(lm, PROMPTS, max_tokens=20)
    for prompt, got in zip(PROMPTS, batched, strict=True):
        ids, _ = lm.encode([{"role": "user", "content": prompt}], [])
        out = lm.model.generate(
            torch.tensor([ids]),
            max_new_tokens=20,
            min_new_tokens=20,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
        assert got == out[0, len(ids) :].tolist(), prompt


def test_it_holds_back_text_that_may_start_a_stop_sequence() -> None:
    assert _held_back("hello wor", ["world"]) == 3
    assert _held_back("hello", ["xyz"]) == 0
    assert _held_back("ab", ["b", "abc"]) == 2
