"""Reads for the arena: ownership-checked access, page data, and the public battle-log format."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet

from arena import sampling
from arena.models import Battle, BattleTarget, Mode, SamplingPolicy, Turn, Vote
from modelhub.models import TERMINAL_STATUSES, Generation, Model

WINNER = {"a": "model_a", "b": "model_b", "tie": "tie", "bothbad": "tie (bothbad)"}


@dataclass(frozen=True)
class Requester:
    user_id: int | None
    session_key: str
    ip_hash: str = ""

    def owns(self, prefix: str = "") -> Q:
        """Filter for battles this requester owns: by account, or by this browser's session."""
        q = Q(pk__in=[])
        if self.user_id is not None:
            q |= Q(**{f"{prefix}user_id": self.user_id})
        if self.session_key:
            q |= Q(**{f"{prefix}session_key": self.session_key})
        return q

    @property
    def ident(self) -> str:
        return f"u{self.user_id}" if self.user_id is not None else f"s{self.session_key}"


def anonymous_appearances(ids: list[int], *, votes: bool) -> dict[int, int]:
    """Per model of `ids`: its anonymous battles on either side (or the votes on them)."""
    rows: QuerySet[Any]
    if votes:
        rows = Vote.objects.filter(battle__mode=Mode.ANONYMOUS).filter(
            Q(battle__model_a_id__in=ids) | Q(battle__model_b_id__in=ids)
        )
        rows = rows.values_list("battle__model_a_id", "battle__model_b_id")
    else:
        rows = Battle.objects.filter(mode=Mode.ANONYMOUS).filter(
            Q(model_a_id__in=ids) | Q(model_b_id__in=ids)
        )
        rows = rows.values_list("model_a_id", "model_b_id")
    counts: dict[int, int] = defaultdict(int)
    wanted = set(ids)
    for a, b, n in rows.annotate(n=Count("id")).order_by():
        for model_id in (a, b):
            if model_id in wanted:
                counts[model_id] += n
    return dict(counts)


def sampling_candidates(
    pool: list[Model], *, key: Callable[[Model], str]
) -> tuple[SamplingPolicy, list[sampling.Candidate]]:
    """The sampling policy in force and a candidate per model of `pool` (named by `key`), with
    the vote and battle counts its boosts and targets need."""
    policy = SamplingPolicy.objects.first() or SamplingPolicy()
    ids = [m.id for m in pool]
    votes = anonymous_appearances(ids, votes=True)
    targets = dict(
        BattleTarget.objects.filter(model_id__in=ids).values_list("model_id", "target_battles")
    )
    battles = anonymous_appearances(ids, votes=False) if targets else {}
    candidates = [
        sampling.Candidate(
            key=key(m),
            weight=m.sampling_weight,
            votes=votes.get(m.id, 0),
            battles=battles.get(m.id, 0),
            target_battles=targets.get(m.id),
        )
        for m in pool
    ]
    return policy, candidates


def battle_for_owner(*, battle_id: Any, requester: Requester) -> Battle | None:
    try:
        return (
            Battle.objects.select_related("model_a", "model_b")
            .filter(requester.owns())
            .get(id=battle_id)
        )
    except (Battle.DoesNotExist, ValidationError, ValueError, TypeError):
        return None


def battle_shared(*, battle_id: Any) -> Battle | None:
    """A battle anyone with the link may read: one that has been voted on."""
    try:
        return (
            Battle.objects.select_related("model_a", "model_b")
            .filter(id=battle_id, votes__isnull=False)
            .first()
        )
    except (ValidationError, ValueError, TypeError):
        return None


def battle_turns(*, battle: Battle, include_superseded: bool = False) -> list[Turn]:
    qs = battle.turns.select_related("generation_a", "generation_b", "vote")
    if not include_superseded:
        qs = qs.filter(superseded=False)
    return list(qs.order_by("index", "attempt"))


def battle_is_revealed(*, battle: Battle) -> bool:
    return battle.mode != Mode.ANONYMOUS or battle.votes.exists()


def turn_is_finished(turn: Turn) -> bool:
    gens = [turn.generation_a, turn.generation_b] if turn.generation_b_id else [turn.generation_a]
    return all(g is not None and g.status in TERMINAL_STATUSES for g in gens)


def generation_in_battle(*, battle: Battle, generation_id: Any) -> tuple[Generation, str] | None:
    """The generation and its side ("a"/"b") if it belongs to a turn of this battle."""
    turn = (
        Turn.objects.select_related("generation_a", "generation_b")
        .filter(battle=battle)
        .filter(Q(generation_a_id=generation_id) | Q(generation_b_id=generation_id))
        .first()
    )
    if turn is None:
        return None
    if str(turn.generation_a_id) == str(generation_id):
        return turn.generation_a, "a"
    assert turn.generation_b is not None
    return turn.generation_b, "b"


def _judge(vote: Vote) -> str:
    return vote_judge(user_id=vote.user_id, session_key=vote.session_key)


def vote_judge(*, user_id: int | None, session_key: str) -> str:
    """The voter's name in battle logs (``judge``): the account, else a hash of the session."""
    if user_id is not None:
        return f"arena_user_{user_id}"
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:16]
    return f"arena_session_{digest}"


def _conversation(turns: list[Turn], side: str) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for turn in turns:
        generation = turn.generation_a if side == "a" else turn.generation_b
        messages.append({"role": "user", "content": turn.prompt})
        messages.append({"role": "assistant", "content": generation.text if generation else ""})
    return messages


def battle_log_rows(
    queryset: QuerySet[Vote] | None = None, *, extra: bool = False
) -> Iterator[dict[str, Any]]:
    """Votes on two-model battles in the public battle-log format: model_a, model_b, winner
    (model_a, model_b, tie, tie (bothbad)), conversation_a/b (up to the voted turn), turn, anony,
    language, tstamp, judge. With extra=True each row also carries what ratings need beyond the
    format: battle_id, pair_probability, leaked, categories."""
    votes = (queryset if queryset is not None else Vote.objects.all()).filter(
        battle__mode__in=[Mode.ANONYMOUS, Mode.NAMED], choice__in=list(WINNER)
    )
    votes = votes.select_related("turn", "battle", "battle__model_a", "battle__model_b").order_by(
        "created_at", "id"
    )
    cache: dict[Any, list[Turn]] = {}
    for vote in votes.iterator(chunk_size=500):
        battle = vote.battle
        if battle.id not in cache:
            cache.clear()
            cache[battle.id] = list(
                battle.turns.select_related("generation_a", "generation_b").order_by(
                    "index", "attempt"
                )
            )
        voted = vote.turn
        # The conversation as the voter saw it: for each earlier index the attempt that was kept
        # (the last one), and the voted attempt for its own index.
        chosen: dict[int, Turn] = {}
        for turn in cache[battle.id]:
            if turn.index < voted.index or turn.id == voted.id:
                chosen[turn.index] = turn
        turns = [chosen[i] for i in sorted(chosen)]
        assert battle.model_b is not None
        row: dict[str, Any] = {
            "model_a": battle.model_a.name,
            "model_b": battle.model_b.name,
            "winner": WINNER[vote.choice],
            "conversation_a": _conversation(turns, "a"),
            "conversation_b": _conversation(turns, "b"),
            "turn": voted.index,
            "anony": vote.anony,
            "language": battle.language or "unknown",
            "tstamp": vote.created_at.timestamp(),
            "judge": _judge(vote),
        }
        if extra:
            row |= {
                "battle_id": str(battle.id),
                "pair_probability": battle.pair_probability,
                "leaked": vote.leaked or battle.leaked,
                "categories": list(battle.categories),
            }
        yield row


def vote_with_turn(*, vote_id: int) -> Vote | None:
    """A vote with its battle, turn and the turn's answers (for the apps fed by vote_cast)."""
    return (
        Vote.objects.select_related("battle", "turn__generation_a", "turn__generation_b")
        .filter(id=vote_id)
        .first()
    )


def battle_vote_choices(*, battle_id: Any) -> list[str]:
    """The choices of every vote on the battle's turns, oldest first."""
    return list(
        Vote.objects.filter(battle_id=battle_id).order_by("id").values_list("choice", flat=True)
    )


def user_votes_since(*, user_id: int, since: Any) -> int:
    """How many votes the account cast since the given time."""
    return Vote.objects.filter(user_id=user_id, created_at__gte=since).count()


# -- dataset sources (read by collection's dataset builder) -----------------------------------


def dataset_battle_rows(*, until: Any) -> Iterator[dict[str, Any]]:
    """Two-model battle votes cast up to ``until``, in the battle-log format with the extra fields
    (battle_id among them), oldest first: a frozen dataset re-reads exactly these later."""
    return battle_log_rows(Vote.objects.filter(created_at__lte=until), extra=True)


def dataset_direct_rows(*, until: Any) -> Iterator[dict[str, Any]]:
    """Thumbs votes on direct chats cast up to ``until``, oldest first: battle_id, model, the
    conversation up to the voted turn (OpenAI messages), up (bool), language, tstamp."""
    votes = (
        Vote.objects.filter(
            created_at__lte=until, battle__mode=Mode.DIRECT, choice__in=["up", "down"]
        )
        .select_related("turn__generation_a", "battle__model_a")
        .order_by("created_at", "id")
    )
    for vote in votes.iterator(chunk_size=500):
        battle, voted = vote.battle, vote.turn
        kept: dict[int, Turn] = {}
        for turn in battle.turns.select_related("generation_a").order_by("index", "attempt"):
            if turn.index < voted.index or turn.id == voted.id:
                kept[turn.index] = turn
        yield {
            "battle_id": str(battle.id),
            "model": battle.model_a.name,
            "conversation": _conversation([kept[i] for i in sorted(kept)], "a"),
            "up": vote.choice == "up",
            "turn": voted.index,
            "language": battle.language or "unknown",
            "tstamp": vote.created_at.timestamp(),
        }


def battle_ids_of_user(*, user_id: int) -> list[str]:
    """Every battle the account started or voted in (what its deletion takes out of datasets)."""
    ids = set(Battle.objects.filter(user_id=user_id).values_list("id", flat=True))
    ids |= set(Vote.objects.filter(user_id=user_id).values_list("battle_id", flat=True))
    return sorted(str(i) for i in ids)


def battles_for_review() -> Iterator[dict[str, Any]]:
    """Battles someone flagged or whose answers leaked a model's identity, oldest first (the
    curators' review queue)."""
    battles = Battle.objects.filter(Q(flagged=True) | Q(leaked=True)).order_by("created_at")
    for battle in battles.only("id", "flagged", "flag_reason", "leaked").iterator(chunk_size=500):
        yield {
            "battle_id": str(battle.id),
            "flagged": battle.flagged,
            "flag_reason": battle.flag_reason,
            "leaked": battle.leaked,
        }


def battle_texts_since(
    *, after: datetime | None, before: datetime, limit: int
) -> list[dict[str, Any]]:
    """The oldest ``limit`` battles created after ``after`` (all when None) and before
    ``before``, each with its current turns' prompts and answers: ``{"battle_id", "created_at",
    "texts"}`` (the curators' moderation scan)."""
    battles = Battle.objects.filter(created_at__lt=before).order_by("created_at", "id")
    if after is not None:
        battles = battles.filter(created_at__gt=after)
    rows = list(battles.values("id", "created_at")[:limit])
    texts: dict[Any, list[str]] = {row["id"]: [] for row in rows}
    turns = Turn.objects.filter(battle_id__in=list(texts), superseded=False).values_list(
        "battle_id", "prompt", "generation_a__text", "generation_b__text"
    )
    for battle_id, *parts in turns:
        texts[battle_id] += [part for part in parts if part]
    return [
        {"battle_id": str(row["id"]), "created_at": row["created_at"], "texts": texts[row["id"]]}
        for row in rows
    ]


def battle_transcript(*, battle_id: str) -> list[dict[str, str]]:
    """A battle's current turns for a curator (prompt, then each side's answer): ``[{"role",
    "name", "content"}]`` with name "model_a" / "model_b" on answers; [] when there is none."""
    turns = (
        Turn.objects.filter(battle_id=battle_id, superseded=False)
        .select_related("generation_a", "generation_b")
        .order_by("index", "attempt")
    )
    messages: list[dict[str, str]] = []
    for turn in turns:
        messages.append({"role": "user", "name": "", "content": turn.prompt})
        for name, generation in (("model_a", turn.generation_a), ("model_b", turn.generation_b)):
            if generation is not None:
                messages.append({"role": "assistant", "name": name, "content": generation.text})
    return messages
