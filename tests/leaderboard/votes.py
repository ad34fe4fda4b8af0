"""Votes for leaderboard tests, made directly in the database: one battle, its finished turn
and the vote, as the arena stores them."""

from __future__ import annotations

import random
from typing import Any

from django.utils import timezone

from arena.models import Battle, Mode, Turn, Vote
from modelhub.models import Generation, GenerationStatus, Model

ANSWERS = ("# Title\n- one\n- two\n**bold** answer", "short answer", "a longer plain answer " * 5)


def make_vote(
    model_a: Model,
    model_b: Model,
    choice: str,
    *,
    mode: str = Mode.ANONYMOUS,
    anony: bool = True,
    leaked: bool = False,
    flagged: bool = False,
    categories: list[str] | None = None,
    prompt: str = "hello there",
    text_a: str = "answer a",
    text_b: str = "answer b",
    pair_probability: float | None = 0.25,
) -> Vote:
    """One battle with one finished turn and its vote, created directly."""
    now = timezone.now()
    battle = Battle.objects.create(
        mode=mode,
        model_a=model_a,
        model_b=model_b,
        pair_probability=pair_probability if mode == Mode.ANONYMOUS else None,
        session_key="s-board",
        language="English",
        categories=categories or [],
        leaked=leaked,
        flagged=flagged,
    )
    gens = [
        Generation.objects.create(
            model=m, messages=[{"role": "user", "content": prompt}], status=GenerationStatus.DONE,
            text=text, finished_at=now,
        )
        for m, text in ((model_a, text_a), (model_b, text_b))
    ]  # fmt: skip
    turn = Turn.objects.create(
        battle=battle, index=1, prompt=prompt, generation_a=gens[0], generation_b=gens[1]
    )
    return Vote.objects.create(
        turn=turn, battle=battle, choice=choice, session_key="s-board", anony=anony, leaked=leaked
    )


def simulate_votes(models: list[Model], n: int, *, seed: int = 1) -> list[Vote]:
    """n counted votes; stronger models (earlier in the list) win more often."""
    rng = random.Random(seed)
    strength = {m.id: 2.0 - 0.5 * k for k, m in enumerate(models)}
    votes = []
    for k in range(n):
        a, b = rng.sample(models, 2)
        p = strength[a.id] / (strength[a.id] + strength[b.id])
        roll = rng.random()
        choice = "tie" if roll > 0.9 else ("a" if rng.random() < p else "b")
        if k % 17 == 0:
            choice = "bothbad"
        cats: list[Any] = ["coding"] if k % 3 == 0 else []
        votes.append(
            make_vote(
                a, b, choice, categories=cats, text_a=ANSWERS[k % 3], text_b=ANSWERS[(k + 1) % 3]
            )
        )
    return votes
