"""The evaluation gate's measurements (no Django): held-out loss, replies to held-out prompts,
and a pairwise judge.

The judge is a chat model from the hub, asked which of two answers is better and read from its
next-token probabilities of "A" and "B" (no free text to parse, so small models judge too). Each
pair is judged in both orders, which cancels the judge's preference for a position.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Message = dict[str, Any]

# A verdict within this of 50/50 is a tie.
TIE_MARGIN = 0.05
JUDGE_TEMPLATE = (
    "Question: {question}\n\nAnswer A: {a}\n\nAnswer B: {b}\n\n"
    "Which answer is better? Reply with one letter, A or B."
)


def _load(path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model: Any = AutoModelForCausalLM.from_pretrained(path)
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    return tokenizer, model


def _ids(tokenizer: Any, messages: list[Message], generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def heldout_loss(model_dir: Path, conversations: Iterable[list[Message]], max_length: int) -> float:
    """Mean next-token loss (nats per token) of the model over the conversations, each rendered
    with the model's chat template; NaN without any."""
    import torch

    tokenizer, model = _load(model_dir)
    total, count = 0.0, 0
    with torch.no_grad():
        for messages in conversations:
            ids = _ids(tokenizer, messages, generation_prompt=False)[:max_length]
            if len(ids) < 2:
                continue
            tensor = torch.tensor([ids], device=model.device)
            out = model(input_ids=tensor, labels=tensor)
            total += float(out.loss) * (len(ids) - 1)
            count += len(ids) - 1
    return total / count if count else math.nan


def replies(model_dir: Path, prompts: list[list[Message]], max_new_tokens: int) -> list[str]:
    """Greedy replies of the model to each prompt (deterministic, so a gate can be re-run)."""
    import torch

    tokenizer, model = _load(model_dir)
    answers: list[str] = []
    with torch.no_grad():
        for messages in prompts:
            ids = _ids(tokenizer, messages, generation_prompt=True)
            tensor = torch.tensor([ids], device=model.device)
            out = model.generate(
                input_ids=tensor,
                attention_mask=torch.ones_like(tensor),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
            answers.append(tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True).strip())
    return answers


@dataclass
class Verdict:
    question: str
    first: str  # "new" or "base": whose reply the judge saw as A
    reply_a: str
    reply_b: str
    verdict: str  # "a", "b" or "tie"
    p_a: float
    p_b: float

    @property
    def winner(self) -> str:
        """ "new", "base" or "tie"."""
        if self.verdict == "tie":
            return "tie"
        other = "base" if self.first == "new" else "new"
        return self.first if self.verdict == "a" else other


def judge(judge_dir: Path, questions: list[str], new: list[str], base: list[str]) -> list[Verdict]:
    """Two verdicts per question: the new model's reply as A, then as B."""
    import torch

    tokenizer, model = _load(judge_dir)
    letter_a = tokenizer("A", add_special_tokens=False)["input_ids"][-1]
    letter_b = tokenizer("B", add_special_tokens=False)["input_ids"][-1]
    verdicts: list[Verdict] = []
    with torch.no_grad():
        for question, mine, theirs in zip(questions, new, base, strict=True):
            for first, (a, b) in (("new", (mine, theirs)), ("base", (theirs, mine))):
                content = JUDGE_TEMPLATE.format(question=question, a=a, b=b)
                ids = _ids(tokenizer, [{"role": "user", "content": content}], True)
                logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1]
                pair = torch.softmax(logits[[letter_a, letter_b]].float(), dim=0)
                p_a, p_b = float(pair[0]), float(pair[1])
                verdict = "tie" if abs(p_a - p_b) < TIE_MARGIN * 2 else ("a" if p_a > p_b else "b")
                verdicts.append(Verdict(question, first, a, b, verdict, p_a, p_b))
    return verdicts


def function_calling(models: dict[str, Path], cases: list[Any]) -> dict[str, dict[str, Any]]:
    """The function-calling check (BFCL-style: calls matched on name and arguments) of each model
    directory, by name: the local engine serves them all, as it would in the arena, and the
    official openai client asks each the same cases (``modelhub.zoo.toolcheck``)."""
    import tempfile

    from modelhub.zoo import toolcheck
    from modelhub.zoo.serving import engine_server

    with tempfile.TemporaryDirectory(prefix="ludus-gate-") as served:
        for name, path in models.items():
            (Path(served) / name).symlink_to(path.resolve(), target_is_directory=True)
        with engine_server(Path(served)) as url:
            return {name: toolcheck.evaluate(f"{url}/v1", name, cases) for name in models}


def win_rate(winners: Iterable[str]) -> float | None:
    """The new model's share of wins, ties counting half; None without verdicts."""
    scores = [1.0 if w == "new" else 0.5 if w == "tie" else 0.0 for w in winners]
    return sum(scores) / len(scores) if scores else None
