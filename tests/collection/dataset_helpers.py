"""Arena rows for dataset tests, made directly in the database as the arena stores them."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.utils import timezone

from arena.models import Battle, Mode, Turn, Vote
from modelhub.models import Generation, GenerationStatus, Model


def battle_vote(
    model_a: Model,
    model_b: Model | None,
    choice: str,
    *,
    prompt: str = "hello there",
    text_a: str = "answer a",
    text_b: str = "answer b",
    user: User | None = None,
    voter: User | None = None,
) -> Vote:
    """One battle (direct when model_b is None) with one finished turn and its vote."""
    now = timezone.now()
    mode = Mode.DIRECT if model_b is None else Mode.ANONYMOUS
    battle = Battle.objects.create(
        mode=mode, model_a=model_a, model_b=model_b, user=user, session_key="s-data",
        language="English",
    )  # fmt: skip
    generations = [
        Generation.objects.create(
            model=m, messages=[{"role": "user", "content": prompt}], status=GenerationStatus.DONE,
            text=text, finished_at=now,
        )
        for m, text in ((model_a, text_a), (model_b, text_b)) if m is not None
    ]  # fmt: skip
    turn = Turn.objects.create(
        battle=battle, index=1, prompt=prompt, generation_a=generations[0],
        generation_b=generations[1] if len(generations) > 1 else None,
    )  # fmt: skip
    return Vote.objects.create(
        turn=turn, battle=battle, choice=choice, user=voter or user, session_key="s-data",
        anony=mode == Mode.ANONYMOUS,
    )  # fmt: skip
