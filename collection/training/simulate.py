"""The simulated crowd of the fine-tuning demo (no Django): replies sampled from zoo models, and a
voter that prefers the reply a reference model finds more likely, plus noise.

The reference model scores each reply by its mean log-probability per token given the prompt
(with the chat template). The voter picks A with probability sigmoid((score_a - score_b) / noise):
a small ``noise`` makes a near-deterministic voter, a large one a coin.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from collection.training.evaluation import _ids, _load


class Models:
    """Zoo models loaded once each, by directory."""

    def __init__(self) -> None:
        self._loaded: dict[Path, tuple[Any, Any]] = {}

    def get(self, path: Path) -> tuple[Any, Any]:
        if path not in self._loaded:
            self._loaded[path] = _load(path)
        return self._loaded[path]


def sample_reply(models: Models, path: Path, prompt: str, *, max_new_tokens: int, seed: int) -> str:
    """One sampled reply (temperature 0.8), reproducible from ``seed``."""
    import torch

    tokenizer, model = models.get(path)
    ids = _ids(tokenizer, [{"role": "user", "content": prompt}], generation_prompt=True)
    torch.manual_seed(seed)
    tensor = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        out = model.generate(
            input_ids=tensor,
            attention_mask=torch.ones_like(tensor),
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=0.8,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    text: str = tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True).strip()
    return text or "…"


def reply_score(models: Models, reference: Path, prompt: str, reply: str) -> float:
    """Mean log-probability per token of ``reply`` after ``prompt`` under the reference model."""
    import torch

    tokenizer, model = models.get(reference)
    messages = [{"role": "user", "content": prompt}]
    head = _ids(tokenizer, messages, generation_prompt=True)
    full = _ids(tokenizer, [*messages, {"role": "assistant", "content": reply}], False)
    if len(full) <= len(head):
        return -math.inf
    tensor = torch.tensor([full], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=tensor).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    targets = tensor[0, 1:]
    picked = logprobs[torch.arange(len(targets)), targets][len(head) - 1 :]
    return float(picked.mean())


def vote(score_a: float, score_b: float, *, noise: float, rng: random.Random) -> str:
    """ "a" or "b": the reference's preference, blurred by ``noise``."""
    if math.isinf(score_a) or math.isinf(score_b):
        diff = 0.0 if score_a == score_b else (1.0 if score_a > score_b else -1.0) * 50
    else:
        diff = (score_a - score_b) / max(noise, 1e-6)
    p_a = 1.0 / (1.0 + math.exp(-max(min(diff, 50.0), -50.0)))
    return "a" if rng.random() < p_a else "b"
