"""Votes: one statement that checks, locks and inserts, and the reveal it answers with."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from arena import ratelimit, signals
from arena.leaderboard.services import leaderboard_publish_soon
from arena.models import DIRECT_CHOICES, PAIR_CHOICES, Battle, Mode, Turn, Vote
from arena.selectors import Requester
from arena.services.base import ArenaError, Conflict, NotFound, RateLimited, TooEarly
from modelhub.models import TERMINAL_STATUSES, Generation, Model


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
                   b.mode, b.leaked, b.model_b_id, b.tools,
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
            WHERE t.id = %(turn)s::bigint AND t.battle_id = %(battle)s::uuid AND ({{owner}})
            FOR UPDATE OF t
        ), ins AS (
            INSERT INTO {vote} (turn_id, battle_id, choice, user_id, session_key, ip_hash, anony,
                                leaked, time_to_vote_ms, created_at)
            SELECT t.id, t.battle_id, %(choice)s::text, %(user)s::bigint, %(session)s::text, %(ip)s::text,
                   t.mode = %(anonymous)s::text AND NOT t.revealed, t.leaked,
                   GREATEST(0, (EXTRACT(EPOCH FROM %(now)s::timestamptz
                                - GREATEST(t.finished_a, t.finished_b)) * 1000))::integer,
                   %(now)s::timestamptz
            FROM t
            WHERE NOT t.superseded AND NOT t.has_later
              AND t.status_a = ANY(%(terminal)s::text[])
              AND (t.model_b_id IS NULL OR t.status_b = ANY(%(terminal)s::text[]))
              AND %(choice)s::text = ANY(CASE WHEN t.mode = %(direct)s::text THEN %(direct_choices)s::text[]
                                        ELSE %(pair_choices)s::text[] END)
            ON CONFLICT (turn_id) DO NOTHING
            RETURNING id
        )
        SELECT t.superseded, t."index", t.has_later, t.revealed, t.mode, t.leaked, t.model_b_id,
               t.status_a, t.finished_a, t.status_b, t.finished_b,
               t.ma_id, t.ma_name, t.ma_display, t.ma_org, t.mb_name, t.mb_display, t.mb_org,
               t.tools, (SELECT id FROM ins)
        FROM t"""
    return cast


def _owner_sql(requester: Requester) -> tuple[str, dict[str, Any]]:
    """SQL for "the requester owns battle b" (same rule as Requester.owns)."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if requester.user_id is not None:
        clauses.append("b.user_id = %(owner_user)s::bigint")
        params["owner_user"] = requester.user_id
    if requester.session_key:
        clauses.append("b.session_key = %(owner_session)s::text")
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
    A vote on an answer that ended in an error or was stopped is stored (the voter gets the
    reveal) and never counted in ratings (arena.leaderboard.selectors.ANSWERED).
    """
    if not ratelimit.hit("vote", _vote_limits(requester)):
        raise RateLimited(TOO_FAST)
    sql, params = _vote_statement(
        battle_id=battle_id, turn_id=turn_id, requester=requester, choice=choice
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    result = _vote_outcome(row, params=params, requester=requester, choice=choice)
    transaction.on_commit(lambda: _vote_announce(result))
    return result


def _vote_announce(result: VoteResult) -> None:
    """The arena's hand-off to the apps above it (see arena.signals.vote_cast), and a live
    leaderboard publish for a vote the boards may count (a blind verdict on two models)."""
    vote = result.vote
    if vote.anony and not vote.leaked and result.battle.model_b_id is not None:
        leaderboard_publish_soon()
    signals.vote_cast.send_robust(
        sender=Vote, vote_id=vote.id, battle_id=vote.battle_id, choice=vote.choice,
        user_id=vote.user_id, turn_index=result.turn.index, tools=bool(result.battle.tools),
    )  # fmt: skip


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
     model_a_id, name_a, display_a, org_a, name_b, display_b, org_b, tools, vote_id) = row  # fmt: skip
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
    # Django's psycopg setup hands jsonb over as text (its fields decode it themselves).
    tools = json.loads(tools) if isinstance(tools, str) else tools or []
    battle = Battle(
        id=battle_uuid, mode=mode, leaked=leaked, tools=tools, model_a=model_a, model_b=model_b
    )
    turn = Turn(id=turn_pk, index=index, superseded=False, battle=battle)
    vote = Vote(
        id=vote_id, turn=turn, battle=battle, choice=choice, user_id=requester.user_id,
        session_key=requester.session_key, ip_hash=requester.ip_hash,
        anony=mode == Mode.ANONYMOUS and not revealed, leaked=leaked,
        time_to_vote_ms=max(0, int((now - finished).total_seconds() * 1000)) if finished else None,
        created_at=now,
    )  # fmt: skip
    return VoteResult(vote=vote, battle=battle, turn=turn)
