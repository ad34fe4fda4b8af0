"""Writes of the collection app: quest items, the router's claim, submissions, the XP ledger."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from arena import selectors as arena_selectors
from arena.services import Conflict, NotFound, RateLimited, ServiceError
from collection import rules, selectors
from collection.models import (
    GOLD_TYPES,
    Assignment,
    AssignmentState,
    Contributor,
    Draft,
    GoldCopy,
    GoldItem,
    ItemStatus,
    QuestFocus,
    QuestItem,
    QuestType,
    XpEntry,
    XpHold,
    XpState,
)

# A quest request refused: `status` is the HTTP status and the message is for the user. The
# refusals are the arena's (NotFound, Conflict), shared by every app's services.
QuestError = ServiceError


class LeaseExpired(Conflict):
    """The assignment's lease ran out; its slot went back to the queue."""


class BudgetSpent(RateLimited):
    """The daily budget of quest answers is spent (429)."""


def budget_spent_message() -> str:
    return (
        f"You have answered today's {settings.QUEST_ANSWERS_PER_DAY} quests, the daily budget."
        " It renews at midnight UTC."
    )


# -- items -----------------------------------------------------------------------------------------


def quest_item_create(
    *,
    type: str,
    prompt: str,
    replies: list[dict[str, Any]] | None = None,
    overlap: int | None = None,
    priority: int = 0,
    battle_id: Any = None,
    author_id: int | None = None,
    reviewed: Assignment | None = None,
    source: str = "",
    focus: str = "",
) -> QuestItem | None:
    """A new open item; None when an item with the same non-blank source exists (spawning is
    idempotent)."""
    overlap = overlap or rules.OVERLAP[type]
    item = QuestItem(
        type=type, prompt=prompt, replies=replies or [], overlap=overlap, open_slots=overlap,
        priority=priority, battle_id=battle_id, author_id=author_id, reviewed=reviewed,
        source=source, focus=focus,
    )  # fmt: skip
    try:
        with transaction.atomic():
            item.save()
    except IntegrityError:
        if source and QuestItem.objects.filter(source=source).exists():
            return None
        raise
    # A new kind of work shows on the quest page at once, not when the backlog's cache expires.
    transaction.on_commit(lambda: cache.delete(selectors.BACKLOG_CACHE_KEY))
    return item


def quests_from_vote(*, vote_id: int) -> list[QuestItem]:
    """The quests a stored arena vote spawns: "both bad" asks for a reference answer to the prompt
    and a label for each reply; a tie, or a vote that disagrees with an earlier vote of the same
    battle, asks the crowd to rank the replies (an image battle's to compare with the image). A
    tools battle's voted turn where a reply called a tool asks which reply used its tools better
    (a ranking with the calls shown) and, for each reply that called one, whether its calls were
    right (a label with tool-use labels), whatever the verdict."""
    vote = arena_selectors.vote_with_turn(vote_id=vote_id)
    if vote is None or vote.turn.generation_b is None:
        return []
    turn, battle, answer_b = vote.turn, vote.battle, vote.turn.generation_b
    replies = [
        {"key": "a", "text": turn.generation_a.text},
        {"key": "b", "text": answer_b.text},
    ]
    author = battle.user_id
    created: list[QuestItem | None] = []
    tool_replies: list[dict[str, Any]] = (
        [
            {**reply, "tool_calls": _tool_calls_shown(generation.tool_calls)}
            for reply, generation in zip(replies, (turn.generation_a, answer_b), strict=True)
        ]
        if battle.tools
        else []
    )
    called = any(reply["tool_calls"] for reply in tool_replies)
    if vote.choice == "bothbad":
        created.append(
            quest_item_create(
                type=QuestType.REFERENCE,
                prompt=turn.prompt,
                battle_id=battle.id,
                author_id=author,
                priority=1,
                source=f"vote:{vote.id}:reference",
            )
        )
        for reply in replies:
            created.append(
                quest_item_create(
                    type=QuestType.LABEL,
                    prompt=turn.prompt,
                    replies=[reply],
                    battle_id=battle.id,
                    author_id=author,
                    source=f"vote:{vote.id}:label:{reply['key']}",
                )
            )
    decisive = [c for c in arena_selectors.battle_vote_choices(battle_id=battle.id) if c in "ab"]
    disputed = vote.choice == "tie" or (vote.choice in ("a", "b") and len(set(decisive)) > 1)
    if called:
        # The tool-use ranking stands in for the disputed battle's ranking.
        created.append(
            quest_item_create(
                type=QuestType.RANK, prompt=turn.prompt, replies=tool_replies,
                battle_id=battle.id, author_id=author, priority=1 if disputed else 0,
                source=f"vote:{vote.id}:tools", focus=QuestFocus.TOOLS,
            )
        )  # fmt: skip
        for tool_reply in tool_replies:
            if tool_reply["tool_calls"]:
                created.append(
                    quest_item_create(
                        type=QuestType.LABEL, prompt=turn.prompt, replies=[tool_reply],
                        battle_id=battle.id, author_id=author,
                        source=f"vote:{vote.id}:tools:{tool_reply['key']}", focus=QuestFocus.TOOLS,
                    )
                )  # fmt: skip
    elif disputed:
        created.append(
            quest_item_create(
                type=QuestType.IMAGE if battle.image_mime else QuestType.RANK,
                prompt=turn.prompt,
                replies=replies,
                battle_id=battle.id,
                author_id=author,
                priority=1 if vote.choice != "tie" else 0,
                source=f"vote:{vote.id}:rank",
            )
        )
    if vote.user_id is not None:
        goals_settle(user_id=vote.user_id)
    return [item for item in created if item is not None]


def _tool_calls_shown(calls: Any) -> list[dict[str, str]]:
    """A reply's stored tool calls as a quest shows them: name, arguments, result and error, and
    nothing that could tell the models apart (call IDs, durations)."""
    return [
        {
            "name": str(call.get("name", "")),
            "arguments": str(call.get("arguments", "")),
            "result": str(call.get("result") or ""),
            "error": str(call.get("error") or ""),
        }
        for call in calls or []
        if isinstance(call, dict)
    ]


# -- the router -----------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _claim_sql(focused: bool = False) -> str:
    """The user's next assignment and its item, in one statement (one round trip).

    `live`: the user's unexpired lease of the types asked, resumed when there is one. Otherwise
    `pick` walks the partial index quest_item_router (type, priority DESC, id WHERE status =
    'open') in order; FOR UPDATE SKIP LOCKED passes over rows another claim holds, so two people
    never take the same last slot and never wait on each other. Excluded: the user's own work
    (author) and items the user already holds, answered, skipped or let expire (the unique
    assignment). `took` takes the slot (FULL when it was the last), `ins` records the lease. The
    columns are the assignment's, then the item's. `focused`: only items of one focus
    (%(focus)s), through the partial index quest_item_router_focus."""
    item, assignment = QuestItem._meta.db_table, Assignment._meta.db_table
    a_cols = [f.column for f in Assignment._meta.concrete_fields]
    i_cols = [f.column for f in QuestItem._meta.concrete_fields]

    def columns(a: str, i: str) -> str:
        return ", ".join([f"{a}.{c}" for c in a_cols] + [f"{i}.{c}" for c in i_cols])

    focus_live = " AND li.focus = %(focus)s::text" if focused else ""
    focus_pick = " AND i.focus = %(focus)s::text" if focused else ""

    return f"""
        WITH live AS (
            SELECT a.id FROM {assignment} a JOIN {item} li ON li.id = a.item_id
            WHERE a.user_id = %(user)s AND a.state = 'leased' AND a.leased_until >= %(now)s
              AND li.type = ANY(%(live_types)s::text[]){focus_live}
            ORDER BY a.id LIMIT 1
        ), pick AS (
            SELECT i.id FROM {item} i
            WHERE NOT EXISTS (SELECT 1 FROM live)
              AND i.status = 'open' AND i.type = %(type)s{focus_pick}
              AND i.author_id IS DISTINCT FROM %(user)s
              AND NOT EXISTS (SELECT 1 FROM {assignment} a
                              WHERE a.item_id = i.id AND a.user_id = %(user)s)
            ORDER BY i.priority DESC, i.id
            LIMIT 1
            FOR UPDATE OF i SKIP LOCKED
        ), took AS (
            UPDATE {item} i
            SET open_slots = i.open_slots - 1,
                status = CASE WHEN i.open_slots = 1 THEN 'full' ELSE 'open' END
            FROM pick WHERE i.id = pick.id
            RETURNING i.*
        ), ins AS (
            INSERT INTO {assignment} (item_id, user_id, state, leased_until, outcome, created_at)
            SELECT took.id, %(user)s, 'leased', %(until)s, '', %(now)s FROM took
            RETURNING *
        )
        SELECT {columns("ins", "took")} FROM ins JOIN took ON took.id = ins.item_id
        UNION ALL
        SELECT {columns("a", "i")} FROM live
        JOIN {assignment} a ON a.id = live.id JOIN {item} i ON i.id = a.item_id"""


def _from_row(model: type[Any], values: Any) -> Any:
    """An instance from raw columns, through each field's database converter (JSON) as the ORM's
    own queries would."""
    fields = model._meta.concrete_fields
    converted = [
        f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
        for f, v in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def _claimed(row: Any) -> Assignment:
    split = len(Assignment._meta.concrete_fields)
    assignment: Assignment = _from_row(Assignment, row[:split])
    assignment.item = _from_row(QuestItem, row[split:])
    return assignment


def assignment_claim(
    *, user_id: int, quest_type: str | None = None, focus: str = ""
) -> Assignment | None:
    """The user's next piece of work: their live lease (of that type) if they hold one, else a
    new lease on the best open item of the type asked, or of the type with the highest bounty
    that has work for them. None when there is nothing for them. One round trip per type tried.
    With a focus ("tools"), only items of that focus (no gold items: those ask general
    questions)."""
    now = timezone.now()
    if not focus:
        gold = _gold_claim(user_id=user_id, quest_type=quest_type, now=now)
        if gold is not None:
            return gold
    types = [quest_type] if quest_type else [t for t, _b in selectors.quest_bounties_ranked()]
    params: dict[str, Any] = {
        "user": user_id,
        "now": now,
        "until": now + timedelta(seconds=rules.LEASE_SECONDS),
        "live_types": [quest_type] if quest_type else list(QuestType.values),
    }
    if focus:
        params["focus"] = focus
    for kind in types or [quest_type or QuestType.RANK]:
        with connection.cursor() as cursor:
            cursor.execute(_claim_sql(bool(focus)), {**params, "type": kind})
            row = cursor.fetchone()
        if row is not None:
            return _claimed(row)
    return None


# -- gold items ------------------------------------------------------------------------------------


def _gold_due(*, user_id: int, quest_type: str | None, now: Any) -> bool:
    """Whether this claim serves a gold item: a new contributor's first items, then a share of
    QUEST_GOLD_RATE; never while the user holds a live lease the claim would resume."""
    if quest_type is not None and quest_type not in GOLD_TYPES:
        return False
    onboarding = settings.QUEST_ONBOARDING_GOLD
    new = (
        onboarding > 0
        and Assignment.objects.filter(user_id=user_id)[:onboarding].count() < onboarding
    )
    if not new and random.random() >= settings.QUEST_GOLD_RATE:
        return False
    live = Assignment.objects.filter(
        user_id=user_id, state=AssignmentState.LEASED, leased_until__gte=now,
        item__type__in=[quest_type] if quest_type else QuestType.values,
    )  # fmt: skip
    return not live.exists()


def _gold_copy_answer(gold: GoldItem, keys: dict[str, str]) -> dict[str, Any]:
    if "top" in gold.answer:
        return {"top": keys[gold.answer["top"]]}
    return dict(gold.answer)


def _gold_claim(*, user_id: int, quest_type: str | None, now: Any) -> Assignment | None:
    """A lease on a fresh copy of a gold item the user has not seen, when one is due: a new
    QuestItem from the same ID sequence as any other, its replies in a random order, CLOSED so
    that nobody else is ever routed to it. None when none is due or left."""
    if not _gold_due(user_id=user_id, quest_type=quest_type, now=now):
        return None
    types = [quest_type] if quest_type else list(GOLD_TYPES)
    gold = (
        GoldItem.objects.filter(active=True, type__in=types)
        .exclude(copies__user_id=user_id)
        .order_by("?")
        .first()
    )
    if gold is None:
        return None
    replies = list(gold.replies)
    texts = [r["text"] for r in replies]
    order = random.sample(range(len(texts)), len(texts))
    keys = [r["key"] for r in replies]
    shuffled = [{"key": keys[k], "text": texts[j]} for k, j in enumerate(order)]
    moved = {keys[j]: keys[k] for k, j in enumerate(order)}  # gold key -> the copy's key
    try:
        with transaction.atomic():
            item = QuestItem.objects.create(
                type=gold.type, status=ItemStatus.CLOSED, overlap=1, open_slots=0,
                prompt=gold.prompt, replies=shuffled, battle_id=gold.battle_id,
            )  # fmt: skip
            assignment = Assignment.objects.create(
                item=item, user_id=user_id, state=AssignmentState.LEASED,
                leased_until=now + timedelta(seconds=rules.LEASE_SECONDS),
            )  # fmt: skip
            GoldCopy.objects.create(
                item=item, gold=gold, user_id=user_id, answer=_gold_copy_answer(gold, moved)
            )
    except IntegrityError:  # the same gold item claimed twice at once: route ordinary work
        return None
    return assignment


def gold_item_check(*, type: str, replies: Any, answer: Any, battle_id: Any = None) -> list[str]:
    """What is wrong with a gold item's definition, in words (empty when it is sound)."""
    problems = []
    if type not in GOLD_TYPES:
        return [f"Gold items are rankings, image comparisons or labels, not {type!r}."]
    if not isinstance(replies, list) or not all(
        isinstance(r, dict) and isinstance(r.get("key"), str) and isinstance(r.get("text"), str)
        for r in replies
    ):
        return ['Replies are a list of {"key": ..., "text": ...}.']
    keys = [r["key"] for r in replies]
    wanted = (1, 1) if type == QuestType.LABEL else (2, 4)
    if not wanted[0] <= len(keys) <= wanted[1] or len(set(keys)) != len(keys):
        problems.append(f"{QuestType(type).label} takes {wanted[0]}-{wanted[1]} distinct replies.")
    if not isinstance(answer, dict):
        return [*problems, "The answer is a JSON object."]
    if type == QuestType.LABEL:
        known = {key for key, _t in rules.LABELS}
        labels = answer.get("labels", [])
        if not isinstance(labels, list) or not set(labels) <= known:
            problems.append(f"Labels are among {', '.join(sorted(known))}.")
        if answer.get("rating") is not None and answer.get("rating") not in range(1, 6):
            problems.append("The rating is 1 to 5.")
    elif not answer.get("all_bad") and answer.get("top") not in keys:
        problems.append('The answer names the best reply ({"top": key}) or {"all_bad": true}.')
    if type == QuestType.IMAGE and battle_id is None:
        problems.append("An image comparison needs the battle whose image it shows.")
    return problems


def gold_item_save(
    *,
    name: str,
    type: str,
    prompt: str,
    replies: list[dict[str, str]],
    answer: dict[str, Any],
    note: str = "",
    battle_id: Any = None,
) -> tuple[GoldItem, bool]:
    """Create or update the gold item of this name; (item, created). ValueError when its
    definition is unsound."""
    problems = gold_item_check(type=type, replies=replies, answer=answer, battle_id=battle_id)
    if problems:
        raise ValueError(" ".join(problems))
    return GoldItem.objects.update_or_create(
        name=name,
        defaults={
            "type": type, "prompt": prompt, "replies": replies, "answer": answer,
            "note": note, "battle_id": battle_id,
        },
    )  # fmt: skip


def gold_is_right(*, expected: dict[str, Any], answer: dict[str, Any]) -> bool:
    """Whether an answer matches a gold answer (see GoldItem.answer)."""
    if expected.get("all_bad"):
        return bool(answer.get("all_bad"))
    if "top" in expected:
        order = answer.get("order") or []
        return not answer.get("all_bad") and bool(order) and order[0] == expected["top"]
    wanted = set(expected.get("labels", []))
    rating = expected.get("rating")
    close = rating is None or abs(int(answer.get("rating", 0)) - int(rating)) <= 1
    return wanted <= set(answer.get("labels", [])) and close


def _slot_return(item_id: int) -> None:
    QuestItem.objects.filter(id=item_id, status__in=[ItemStatus.OPEN, ItemStatus.FULL]).update(
        open_slots=F("open_slots") + 1, status=ItemStatus.OPEN
    )


def assignments_expire(*, now: Any = None) -> int:
    """Expire the leases past their time and give their slots back; returns how many."""
    now = now or timezone.now()
    expired = 0
    with transaction.atomic():
        stale = list(
            Assignment.objects.select_for_update(skip_locked=True)
            .filter(state=AssignmentState.LEASED, leased_until__lt=now)
            .values_list("id", "item_id")[:1000]
        )
        for assignment_id, item_id in stale:
            Assignment.objects.filter(id=assignment_id).update(state=AssignmentState.EXPIRED)
            _slot_return(item_id)
            expired += 1
    return expired


def _assignment_locked(*, user_id: int, assignment_id: int) -> Assignment:
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("item")
        .filter(id=assignment_id, user_id=user_id)
        .first()
    )
    if assignment is None:
        raise NotFound("No such assignment.")
    return assignment


def assignment_skip(*, user_id: int, assignment_id: int) -> Assignment:
    """Give the slot back; the router will not offer this item to the user again."""
    with transaction.atomic():
        assignment = _assignment_locked(user_id=user_id, assignment_id=assignment_id)
        if assignment.state == AssignmentState.LEASED:
            assignment.state = AssignmentState.SKIPPED
            assignment.save(update_fields=["state"])
            _slot_return(assignment.item_id)
    return assignment


def draft_save(*, user_id: int, item_id: int, text: str) -> Draft:
    """Store the written answer as it is typed (one draft per person and item)."""
    if not Assignment.objects.filter(user_id=user_id, item_id=item_id).exists():
        raise NotFound("No such assignment.")
    draft, _ = Draft.objects.update_or_create(
        user_id=user_id, item_id=item_id, defaults={"text": text[:20_000]}
    )
    return draft


# -- submissions -----------------------------------------------------------------------------------


def _answer_clean(item: QuestItem, data: dict[str, Any]) -> dict[str, Any]:
    """The answer in its stored shape, from form fields; QuestError when it does not fit."""
    keys = [r["key"] for r in item.replies]
    if item.type in (QuestType.RANK, QuestType.IMAGE):
        if data.get("all_bad"):
            return {"all_bad": True, "order": []}
        ranks = {}
        for key in keys:
            try:
                ranks[key] = int(data.get(f"rank_{key}", ""))
            except ValueError:
                raise QuestError("Give every reply a place.") from None
        if sorted(ranks.values()) != list(range(1, len(keys) + 1)):
            raise QuestError("Give every reply a different place.")
        return {"all_bad": False, "order": sorted(keys, key=lambda k: ranks[k])}
    if item.type == QuestType.LABEL:
        asked = rules.TOOL_LABELS if item.focus == QuestFocus.TOOLS else rules.LABELS
        known = {key for key, _title in asked}
        labels = sorted(set(data.get("labels", [])) & known)
        try:
            rating = int(data.get("rating", ""))
        except ValueError:
            raise QuestError("Rate the reply from 1 to 5.") from None
        if not 1 <= rating <= 5:
            raise QuestError("Rate the reply from 1 to 5.")
        return {"labels": labels, "rating": rating}
    if item.type == QuestType.REFERENCE:
        text = str(data.get("text", "")).strip()
        if len(text) < 2:
            raise QuestError("Write an answer.")
        return {"text": text[:20_000]}
    verdict = data.get("verdict")
    if verdict not in ("accept", "reject"):
        raise QuestError("Accept or reject the answer.")
    return {"verdict": verdict, "note": str(data.get("note", ""))[:1000]}


def assignment_submit(*, user_id: int, assignment_id: int, data: dict[str, Any]) -> Assignment:
    """Store the user's answer once: a repeated submission returns the stored one (200, no second
    XP); NotFound for someone else's assignment, LeaseExpired (409) after the lease ran out
    (its slot goes back), Conflict for a skipped one, QuestError for an answer that does not fit.

    XP is posted pending; it settles or is reversed when the item reaches consensus (rank, image,
    label) or its review (reference); reviews settle at once."""
    now = timezone.now()
    with transaction.atomic():
        assignment = _assignment_locked(user_id=user_id, assignment_id=assignment_id)
        if assignment.state == AssignmentState.LEASED and assignment.leased_until < now:
            # Committed before the refusal: the slot goes back to the queue at once.
            assignment.state = AssignmentState.EXPIRED
            assignment.save(update_fields=["state"])
            _slot_return(assignment.item_id)
    if assignment.state == AssignmentState.EXPIRED:
        raise LeaseExpired("Your time on this item ran out; it went back to the queue.")
    with transaction.atomic():
        assignment = _assignment_locked(user_id=user_id, assignment_id=assignment_id)
        if assignment.state == AssignmentState.SUBMITTED:
            return assignment
        if assignment.state != AssignmentState.LEASED:
            raise Conflict("This item was skipped or its time ran out.")
        if selectors.quests_left_today(user_id=user_id) == 0:
            raise BudgetSpent(budget_spent_message())
        item = QuestItem.objects.select_for_update().get(id=assignment.item_id)
        answer = _answer_clean(item, data)
        assignment.state = AssignmentState.SUBMITTED
        assignment.answer = answer
        assignment.submitted_at = now
        assignment.outcome = (
            "waiting for review" if item.type == "reference" else "waiting for others"
        )
        assignment.save(update_fields=["state", "answer", "submitted_at", "outcome"])
        Draft.objects.filter(user_id=user_id, item_id=item.id).delete()
        backlog = selectors.quest_backlog().get(item.type, 0)
        xp_post(
            user_id=user_id, amount=rules.bounty(item.type, backlog),
            reason=f"{QuestType(item.type).label} #{item.id}",
            state=XpState.SETTLED if item.type == QuestType.REVIEW else XpState.PENDING,
            key=f"assignment:{assignment.id}", quest_type=item.type, assignment=assignment,
        )  # fmt: skip
        if item.type == QuestType.REVIEW:
            assignment.outcome = "counted"
            assignment.save(update_fields=["outcome"])
            _review_apply(item=item, answer=answer)
        elif item.type == QuestType.REFERENCE:
            quest_item_create(
                type=QuestType.REVIEW, prompt=item.prompt,
                replies=[{"key": "reference", "text": answer["text"]}], author_id=user_id,
                reviewed=assignment, priority=1, source=f"review:{assignment.id}",
            )  # fmt: skip
        # A gold copy is checked against its known answer; its XP waits for the next
        # reliability refresh, as an ordinary item's waits for the others' answers.
        gold = GoldCopy.objects.filter(item_id=item.id).first() if item.status == "closed" else None
        if gold is not None:
            gold.right = gold_is_right(expected=gold.answer, answer=answer)
            gold.save(update_fields=["right"])
            item.status = ItemStatus.DONE
            item.save(update_fields=["status"])
            goals_settle(user_id=user_id)
            return assignment
        done = item.assignments.filter(state=AssignmentState.SUBMITTED).count()
        if done >= item.overlap:
            item.status = ItemStatus.DONE
            item.save(update_fields=["status"])
            if item.type in (QuestType.RANK, QuestType.IMAGE, QuestType.LABEL):
                _consensus_apply(item)
        goals_settle(user_id=user_id)
    return assignment


def _review_apply(*, item: QuestItem, answer: dict[str, Any]) -> None:
    """A review decides its reference answer: accepted settles the writer's XP, rejected reverses
    it; both say so on the writer's profile."""
    reference = item.reviewed
    if reference is None:
        return
    accepted = answer["verdict"] == "accept"
    reference.outcome = "accepted by review" if accepted else "rejected by review"
    reference.save(update_fields=["outcome"])
    xp_resolve(
        assignment_id=reference.id, settle=accepted,
        resolution=reference.outcome + (f": {answer['note']}" if answer.get("note") else ""),
    )  # fmt: skip


def _consensus_apply(item: QuestItem) -> None:
    """Every answer of a finished item is compared with the crowd's: agreeing answers settle their
    XP, the others are reversed, each with the reason in words."""
    submitted = list(item.assignments.filter(state=AssignmentState.SUBMITTED))
    answers: list[tuple[Assignment, dict[str, Any]]] = [(a, a.answer or {}) for a in submitted]
    n = len(answers)
    # Each answer counts by its author's reliability (1 for everyone until one is estimated).
    weights = selectors.consensus_weights(user_ids=[a.user_id for a in submitted])
    weight = {a.id: weights[a.user_id] for a in submitted}
    if not any(weight.values()):
        weight = dict.fromkeys(weight, 1.0)
    total = sum(weight.values())
    if item.type == QuestType.LABEL:
        median = _weighted_median([(int(ans["rating"]), weight[a.id]) for a, ans in answers])
        counts: dict[str, float] = {}
        for a, ans in answers:
            for label in ans["labels"]:
                counts[label] = counts.get(label, 0.0) + weight[a.id]
        majority = sorted(label for label, c in counts.items() if c * 2 > total)
        item.consensus = {"rating": median, "labels": majority}
        for a, ans in answers:
            agrees = abs(ans["rating"] - median) <= 1
            a.outcome = f"rating {ans['rating']} vs the crowd's {median:g} ({n} people)"
            a.save(update_fields=["outcome"])
            xp_resolve(
                assignment_id=a.id, settle=agrees,
                resolution="agreed with consensus" if agrees else "far from the crowd's rating",
            )  # fmt: skip
    else:
        all_bad = sum(1 for _a, ans in answers if ans["all_bad"])
        bad_weight = sum(weight[a.id] for a, ans in answers if ans["all_bad"])
        points: dict[str, float] = {}
        for a, ans in answers:
            for place, key in enumerate(ans["order"]):
                points[key] = points.get(key, 0.0) + weight[a.id] * (len(ans["order"]) - place)
        points = {key: round(value, 3) for key, value in points.items()}
        firsts = Counter(ans["order"][0] for _a, ans in answers if ans["order"])
        top = (
            "all_bad"
            if bad_weight * 2 > total or not points
            else max(points, key=lambda k: (points[k], k == "a"))
        )
        item.consensus = {"top": top, "points": dict(points), "all_bad": all_bad}
        for a, ans in answers:
            mine = "all_bad" if ans["all_bad"] else ans["order"][0]
            agrees = mine == top
            if top == "all_bad":
                a.outcome = f"all marked bad by {all_bad} of {n}"
            else:
                a.outcome = f"reply {top.upper()} ranked first by {firsts[top]} of {n}"
            a.save(update_fields=["outcome"])
            xp_resolve(
                assignment_id=a.id, settle=agrees,
                resolution="agreed with consensus" if agrees else f"consensus chose {top}",
            )  # fmt: skip
    item.save(update_fields=["consensus"])


def _weighted_median(values: list[tuple[int, float]]) -> float:
    """The median of equally weighted values (as statistics.median), else the lowest value whose
    cumulative weight reaches half."""
    if len({w for _v, w in values}) <= 1:
        return statistics.median(v for v, _w in values)
    ordered = sorted(values)
    half = sum(w for _v, w in ordered) / 2
    running = 0.0
    for value, w in ordered:
        running += w
        if running >= half:
            return value
    return ordered[-1][0]


# -- the ledger ------------------------------------------------------------------------------------


def xp_post(
    *,
    user_id: int,
    amount: int,
    reason: str,
    state: str,
    key: str,
    quest_type: str = "",
    assignment: Assignment | None = None,
) -> XpEntry | None:
    """Append one entry; None when an entry with this key exists (posting is idempotent).
    Hook for quality control: the amount is weighted by the contributor's reliability
    (selectors.contributor_reliability, 1.0 until collection.quality provides one)."""
    weighted = round(amount * selectors.contributor_reliability(user_id=user_id))
    entry = XpEntry(
        user_id=user_id, amount=weighted, reason=reason, state=state, key=key,
        quest_type=quest_type, assignment=assignment,
        resolved_at=timezone.now() if state == XpState.SETTLED else None,
    )  # fmt: skip
    try:
        with transaction.atomic():
            entry.save()
    except IntegrityError:
        return None
    return entry


XP_HELD = "held until your answers' accuracy is established"


def xp_resolve(*, assignment_id: int, settle: bool, resolution: str) -> int:
    """Settle or reverse the pending XP of an assignment (entries already resolved stay as they
    are: the ledger only moves forward); returns how many entries changed. XP that would settle
    for a contributor whose reliability is below QUEST_RELIABILITY_MIN is held instead: it stays
    pending (with XP_HELD as its resolution) and the reliability refresh settles it once the
    contributor's reliability clears the bar."""
    pending = XpEntry.objects.filter(assignment_id=assignment_id, state=XpState.PENDING)
    if settle:
        entries = list(pending.values_list("id", "user_id"))
        low = {
            uid
            for uid in {uid for _e, uid in entries}
            if (r := selectors.reliability_of(user_id=uid)) is not None
            and r < settings.QUEST_RELIABILITY_MIN
        }
        held = [(entry_id, uid) for entry_id, uid in entries if uid in low]
        for entry_id, uid in held:
            XpHold.objects.get_or_create(
                entry_id=entry_id, defaults={"user_id": uid, "resolution": resolution[:200]}
            )
        if held:
            XpEntry.objects.filter(id__in=[e for e, _u in held]).update(resolution=XP_HELD)
            pending = pending.exclude(id__in=[e for e, _u in held])
    return pending.update(
        state=XpState.SETTLED if settle else XpState.REVERSED,
        resolution=resolution[:200],
        resolved_at=timezone.now(),
    )


def goals_settle(*, user_id: int) -> list[str]:
    """Post each daily goal's bonus the first time the user meets it today; returns the goals
    newly met."""
    met = []
    for goal, progress in selectors.goals_progress(user_id=user_id):
        if progress >= goal.target:
            key = f"goal:{goal.key}:{timezone.localdate().isoformat()}"
            if xp_post(
                user_id=user_id, amount=goal.bonus, reason=f"Daily goal: {goal.title}",
                state=XpState.SETTLED, key=key,
            ):  # fmt: skip
                met.append(goal.key)
    return met


def contributor_opt_out_set(*, user: AbstractBaseUser, opt_out: bool) -> Contributor:
    """Show or hide the user on the contributor leaderboards."""
    contributor, _ = Contributor.objects.update_or_create(
        user_id=user.pk, defaults={"leaderboard_opt_out": opt_out}
    )
    return contributor
