"""Helpers for the arena's tests: finish a turn as the pool would, read a battle's current turn."""

from __future__ import annotations

from django.utils import timezone

from arena.models import Battle, Turn
from modelhub.models import Generation, GenerationStatus
from modelhub.signals import generation_finishing


def finish_turn(turn: Turn, text_a: str = "answer a", text_b: str = "answer b") -> None:
    """Finish the turn's answers as the pool does: modelhub's generation_finishing signal (the
    arena flags leaks on it), then the terminal state."""
    now = timezone.now()
    for generation, text in ((turn.generation_a, text_a), (turn.generation_b, text_b)):
        if generation is None:
            continue
        generation.status, generation.text = GenerationStatus.DONE, text
        generation.finished_at, generation.last_seq = now, 2
        generation_finishing.send(Generation, generation=generation)
        Generation.objects.filter(id=generation.id).update(
            status=GenerationStatus.DONE, text=text, finished_at=now, last_seq=2
        )


def last_turn(battle: Battle) -> Turn:
    turn = battle.turns.filter(superseded=False).order_by("-index").first()
    assert turn is not None
    return turn
