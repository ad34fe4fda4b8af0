"""Identity leaks: flag the battle whose answer names one of its models."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache

from django.db import connection

from arena import leak
from arena.models import Battle, Turn
from modelhub.models import Generation, Model

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _leak_candidates_sql() -> str:
    """The unflagged battles holding a generation, with both models' identities. Written out: every
    finished generation runs it, and compiling the ORM query (an OR over two columns, two joins,
    Turn's default ordering) was a third of a generation worker's CPU in a burst of short answers."""
    turn, battle, model = Turn._meta.db_table, Battle._meta.db_table, Model._meta.db_table
    side = "{0}.name, {0}.display_name, {0}.organization, {0}.identity_patterns"
    return (
        f"SELECT b.id, {side.format('ma')}, {side.format('mb')} FROM {turn} t"
        f" JOIN {battle} b ON b.id = t.battle_id"
        f" LEFT JOIN {model} ma ON ma.id = b.model_a_id"
        f" LEFT JOIN {model} mb ON mb.id = b.model_b_id"
        " WHERE (t.generation_a_id = %s OR t.generation_b_id = %s) AND NOT b.leaked"
    )


def generation_leak_flag(*, generation: Generation) -> bool:
    """Flag the battle whose turn holds this finished answer when the answer names one of the
    battle's models (its votes then stop counting in ratings). Called through modelhub's
    generation_finishing signal, before the answer's terminal state is stored: no vote can see the
    answer finished and the battle not yet flagged. A check that raises flags the battle (fails
    closed). Returns whether it flagged."""
    if not generation.text:
        return False
    with connection.cursor() as cursor:
        cursor.execute(_leak_candidates_sql(), [generation.id, generation.id])
        candidates = cursor.fetchall()
    leaked: set[uuid.UUID] = set()
    for battle_id, *sides in candidates:
        try:
            identities = [
                leak.Identity(name, display, org, tuple(patterns or ()))
                for name, display, org, patterns in (sides[:4], sides[4:])
                if name is not None
            ]
            leaking = leak.is_leak(generation.text, identities)
        except Exception:
            # Fail closed: an answer the check could not read is treated as naming its models,
            # so its battle's votes never count unchecked.
            log.exception("the leak check failed on generation %s: flagging", generation.id)
            leaking = True
        if leaking:
            leaked.add(battle_id)
    return (
        bool(leaked) and Battle.objects.filter(id__in=leaked, leaked=False).update(leaked=True) > 0
    )
