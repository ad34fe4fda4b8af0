from __future__ import annotations

import random
from typing import Any, cast

import pytest
from django.utils import timezone

from arena.models import Battle, Mode, Turn, Vote
from modelhub.models import Generation, GenerationStatus, Model
from tests.arena.conftest import _fresh_rate_limits  # noqa: F401  (autouse: no counted limits)
from tests.factories import EndpointFactory, ModelFactory

ANSWERS = ("# Title\n- one\n- two\n**bold** answer", "short answer", "a longer plain answer " * 5)


@pytest.fixture
def board_models(db: None) -> list[Model]:
    """Four models, each with an endpoint; the last one is deprecated."""
    Model.objects.update(enabled=False)  # rows other suites may have left in a reused database
    models = [
        ModelFactory(name="alpha-7b", display_name="Alpha 7B", organization="Alphacorp",
                     license="apache-2.0"),
        ModelFactory(name="beta-chat", display_name="Beta Chat", organization="Betalabs",
                     license="mit"),
        ModelFactory(name="gamma-1", display_name="Gamma One", organization="Alphacorp"),
        ModelFactory(name="old-timer", display_name="Old Timer", organization="Retro",
                     deprecated=True),
    ]  # fmt: skip
    for model in models:
        EndpointFactory(model=model)
    return cast(list[Model], models)


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
