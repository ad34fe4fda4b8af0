"""The curators' review queue: arena battles someone reported, whose answers leaked a model's
identity or whose prompt or answers the moderation scan found offensive wait here, and finished
quest items whose answers disagree (low agreement). A curator approves or rejects each (alone or a selection at once), redacts a
passage or edits one, every action kept as the item's history. A rejected battle is left out of
every later dataset version; redactions and edits are applied to every text of the battle when a
dataset reads it (the arena keeps what was said). Curators save named filters of the queue."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from arena import selectors as arena_selectors
from collection.models import (
    Assignment,
    AssignmentState,
    ItemStatus,
    QuestItem,
    QuestType,
    ReviewAction,
    ReviewActionKind,
    ReviewItem,
    ReviewKind,
    ReviewStatus,
    SavedReviewFilter,
)

REDACTED = "[REDACTED]"
MAX_BULK = 500
MAX_FILTERS = 30
FILTER_KEYS = ("status", "kind", "q")
# A finished item whose answers agree with the crowd's consensus at most this share of the time
# has no real consensus: it waits for a curator. The newest finished items are read per sync.
LOW_AGREEMENT_SHARE = 0.5
AGREEMENT_SCAN = 5000
AGREEMENT_TYPES = (QuestType.RANK, QuestType.IMAGE, QuestType.LABEL)
# The moderation scan reads battles in creation order from where its last run stopped (kept in
# the cache; lost, the scan starts again from the first battle and queues nothing twice).
MODERATION_MARK_KEY = "ludus:review:moderation-mark"
MODERATION_BATCH = 2000
# Battles younger than this wait for the next scan: their answers may still be streaming (the
# generation time limit is five minutes), and a battle committed late still lies past the mark.
MODERATION_SETTLE = timedelta(minutes=10)


class ReviewError(Exception):
    """A decision that cannot be taken (the message is shown to the curator)."""


# -- services ---------------------------------------------------------------------------------


def review_queue_sync() -> int:
    """Add the battles the arena marked (reports, leaks) and the finished quest items whose
    answers disagree (low agreement) that the queue does not hold yet; idempotent. Returns how
    many were added."""
    items = [
        ReviewItem(
            source_key=f"battle:{row['battle_id']}",
            kind=ReviewKind.REPORT if row["flagged"] else ReviewKind.LEAK,
            reason=row["flag_reason"] if row["flagged"] else "a reply named a model",
        )
        for row in arena_selectors.battles_for_review()
    ]
    items += [
        ReviewItem(source_key=f"quest:{item_id}", kind=ReviewKind.AGREEMENT, reason=reason)
        for item_id, reason in low_agreement_items()
    ]
    return _queue(items)


def _queue(items: list[ReviewItem]) -> int:
    """Add the items the queue does not hold yet (by source); returns how many were added."""
    before = ReviewItem.objects.count()
    ReviewItem.objects.bulk_create(items, ignore_conflicts=True)  # returns the conflicting too
    return ReviewItem.objects.count() - before


def moderation_scan(*, batches: int = 10) -> int:
    """Score the prompts and answers of the battles created since the last scan with the
    pipeline's offensive-language model (alt-profanity-check) and queue those at
    ``LUDUS_REVIEW_OFFENSIVE_THRESHOLD`` or above as moderation hits; returns how many were
    queued. Prompt moderation refuses the worst prompts before anything is stored; this finds
    what it let through, in prompts and in answers."""
    from profanity_check import predict_prob

    threshold = settings.REVIEW_OFFENSIVE_THRESHOLD
    mark = cache.get(MODERATION_MARK_KEY)
    settled = timezone.now() - MODERATION_SETTLE
    queued = 0
    for _ in range(batches):
        battles = arena_selectors.battle_texts_since(
            after=mark, before=settled, limit=MODERATION_BATCH
        )
        if not battles:
            break
        texts = [text for battle in battles for text in battle["texts"]]
        scores = iter(predict_prob(texts)) if texts else iter(())
        items = []
        for battle in battles:
            worst = max((float(next(scores)) for _ in battle["texts"]), default=0.0)
            if worst >= threshold:
                items.append(
                    ReviewItem(
                        source_key=f"battle:{battle['battle_id']}",
                        kind=ReviewKind.MODERATION,
                        reason=f"offensive language (score {worst:.2f})",
                    )
                )
        queued += _queue(items)
        mark = battles[-1]["created_at"]
        cache.set(MODERATION_MARK_KEY, mark, timeout=None)
    return queued


def _status_check(status: str) -> None:
    if status not in (ReviewStatus.APPROVED, ReviewStatus.REJECTED):
        raise ReviewError("Approve or reject.")


def review_decide(*, item_id: int, user: User, status: str, note: str = "") -> ReviewItem:
    """Approve or reject one item (a later decision may overturn an earlier one)."""
    return review_decide_many(item_ids=[item_id], user=user, status=status, note=note)[0]


def review_decide_many(
    *, item_ids: Iterable[int], user: User, status: str, note: str = ""
) -> list[ReviewItem]:
    """Approve or reject a selection of items at once, one history entry each; all or none (an
    unknown item refuses the whole selection)."""
    _status_check(status)
    ids = sorted(set(item_ids))
    if not ids:
        raise ReviewError("Select at least one item.")
    if len(ids) > MAX_BULK:
        raise ReviewError(f"Select at most {MAX_BULK} items at once.")
    with transaction.atomic():
        items = list(ReviewItem.objects.select_for_update().filter(id__in=ids).order_by("id"))
        if len(items) != len(ids):
            raise ReviewError("No such item.")
        ReviewItem.objects.filter(id__in=ids).update(status=status)
        ReviewAction.objects.bulk_create(
            ReviewAction(item=item, status=status, user=user, note=note.strip()[:200])
            for item in items
        )
        for item in items:
            item.status = status
    return items


def _messages(source_key: str) -> list[dict[str, str]]:
    """A source's texts as the queue shows them: a battle's transcript, or a quest item's prompt
    and replies."""
    kind, _, key = source_key.partition(":")
    if kind == "battle":
        return arena_selectors.battle_transcript(battle_id=key)
    if kind == "quest":
        item = QuestItem.objects.filter(id=int(key)).first()
        if item is None:
            return []
        return [
            {"role": "user", "content": item.prompt},
            *[
                {"role": "assistant", "name": reply["key"], "content": reply["text"]}
                for reply in item.replies
            ],
        ]
    return []


def _texts(item: ReviewItem) -> list[str]:
    return [m["content"] for m in _messages(item.source_key)]


def review_change(
    *, item_id: int, user: User, action: str, passage: str, replacement: str = "", note: str = ""
) -> ReviewItem:
    """Redact a passage of the item's battle (it becomes ``[REDACTED]``) or edit it (it becomes
    ``replacement``) wherever it appears, in every dataset that reads the battle from now on.
    The passage must occur in the battle as it stands after the item's earlier changes. A
    redaction's history keeps the passage's length and SHA-256, never the passage."""
    if action not in (ReviewActionKind.REDACT, ReviewActionKind.EDIT):
        raise ReviewError("Redact or edit.")
    if not passage.strip():
        raise ReviewError("Give the passage to change, exactly as it appears.")
    if len(passage) > 2000 or len(replacement) > 10_000:
        raise ReviewError("The passage or its replacement is too long.")
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().filter(id=item_id).first()
        if item is None:
            raise ReviewError("No such item.")
        texts = [edits_apply(text, item.edits) for text in _texts(item)]
        if not any(passage in text for text in texts):
            raise ReviewError("That passage does not appear in this item.")
        if action == ReviewActionKind.REDACT:
            replacement = REDACTED
            change: dict[str, Any] = {
                "length": len(passage),
                "sha256": hashlib.sha256(passage.encode()).hexdigest(),
            }
        else:
            if replacement == passage:
                raise ReviewError("The edit changes nothing.")
            change = {"before": passage, "after": replacement}
        item.edits = [*item.edits, {"find": passage, "replace": replacement}]
        item.save(update_fields=["edits"])
        ReviewAction.objects.create(
            item=item,
            action=action,
            status=item.status,
            user=user,
            note=note.strip()[:200],
            change=change,
        )
    return item


def review_filter_save(*, user: User, name: str, params: dict[str, str]) -> SavedReviewFilter:
    """Save (or replace) the user's filter ``name`` with the queue's current parameters."""
    name = name.strip()
    if not name or len(name) > 60:
        raise ReviewError("Name the filter (up to 60 characters).")
    clean = filter_params(params)
    if not any(clean.values()):
        raise ReviewError("Set a filter before saving it.")
    try:
        with transaction.atomic():
            if (
                not SavedReviewFilter.objects.filter(user=user, name=name).exists()
                and SavedReviewFilter.objects.filter(user=user).count() >= MAX_FILTERS
            ):
                raise ReviewError(f"You have {MAX_FILTERS} saved filters. Delete one first.")
            saved, _ = SavedReviewFilter.objects.update_or_create(
                user=user, name=name, defaults={"params": clean}
            )
    except IntegrityError:  # the same name saved twice at once: the other one stands
        raise ReviewError("A filter of that name was just saved.") from None
    return saved


def review_filter_delete(*, user: User, filter_id: int) -> bool:
    deleted, _ = SavedReviewFilter.objects.filter(user=user, id=filter_id).delete()
    return deleted > 0


# -- pure helpers -------------------------------------------------------------------------------


def edits_apply(text: str, edits: Iterable[dict[str, str]]) -> str:
    """``text`` with every edit applied in order (each replaces every occurrence)."""
    for edit in edits:
        text = text.replace(edit["find"], edit["replace"])
    return text


def filter_params(params: dict[str, str]) -> dict[str, str]:
    """The queue's filter parameters, cleaned: unknown values dropped."""
    status = params.get("status", "")
    kind = params.get("kind", "")
    return {
        "status": status if status in ReviewStatus.values or status == "all" else "",
        "kind": kind if kind in ReviewKind.values else "",
        "q": str(params.get("q", "")).strip()[:100],
    }


# -- selectors --------------------------------------------------------------------------------


def review_items(*, params: dict[str, str]) -> QuerySet[ReviewItem]:
    """The queue as a filter shows it: waiting items by default, or one status, or all."""
    clean = filter_params(params)
    items = ReviewItem.objects.prefetch_related("actions__user")
    status = clean["status"] or ReviewStatus.PENDING
    if status != "all":
        items = items.filter(status=status)
    if clean["kind"]:
        items = items.filter(kind=clean["kind"])
    if clean["q"]:
        items = items.filter(Q(source_key__icontains=clean["q"]) | Q(reason__icontains=clean["q"]))
    return items


def review_pending() -> QuerySet[ReviewItem]:
    return ReviewItem.objects.filter(status=ReviewStatus.PENDING)


def review_decided(*, limit: int = 50) -> list[ReviewItem]:
    decided = ReviewItem.objects.exclude(status=ReviewStatus.PENDING).prefetch_related("actions")
    return list(decided.order_by("-id")[:limit])


def review_transcript(*, item: ReviewItem) -> list[dict[str, str]]:
    """The item's battle (or quest item) as datasets will read it (its edits applied)."""
    return [
        m | {"content": edits_apply(m["content"], item.edits)} for m in _messages(item.source_key)
    ]


def _agrees(kind: str, answer: dict[str, Any], consensus: dict[str, Any]) -> bool:
    """Whether one answer agrees with its item's consensus, by the rule that settles its XP: a
    rating within one of the crowd's, or the same first choice ("all bad" included)."""
    if kind == QuestType.LABEL:
        return abs(int(answer.get("rating", 0)) - float(consensus.get("rating", 0))) <= 1
    mine = "all_bad" if answer.get("all_bad") else (answer.get("order") or [""])[0]
    return bool(mine == consensus.get("top"))


def low_agreement_items(*, scan: int = AGREEMENT_SCAN) -> list[tuple[int, str]]:
    """Finished rank, image and label items (overlap reached, consensus taken) not yet in the
    queue whose answers agree with their consensus at most LOW_AGREEMENT_SHARE of the time, with
    the reason in words. (One item's Krippendorff alpha has no disagreement to expect beyond its
    own answers, so the share agreeing with the consensus measures an item's agreement.)"""
    queued = ReviewItem.objects.filter(
        source_key=Concat(Value("quest:"), Cast(OuterRef("id"), CharField()))
    )
    finished = (
        QuestItem.objects.filter(
            status=ItemStatus.DONE, consensus__isnull=False, type__in=AGREEMENT_TYPES
        )
        .exclude(Exists(queued))
        .order_by("-id")
        .values_list("id", "type", "consensus")[:scan]
    )
    items = {item_id: (kind, consensus or {}) for item_id, kind, consensus in finished}
    answers: dict[int, list[dict[str, Any]]] = {item_id: [] for item_id in items}
    submitted = Assignment.objects.filter(
        item_id__in=list(items), state=AssignmentState.SUBMITTED
    ).values_list("item_id", "answer")
    for item_id, answer in submitted.iterator(chunk_size=2000):
        answers[item_id].append(answer or {})
    found = []
    for item_id, (kind, consensus) in sorted(items.items()):
        given = answers[item_id]
        agreeing = sum(_agrees(kind, answer, consensus) for answer in given)
        if len(given) >= 2 and agreeing <= LOW_AGREEMENT_SHARE * len(given):
            if kind == QuestType.LABEL:
                choice = f"rating {consensus.get('rating')}"
            else:
                top = consensus.get("top", "")
                choice = "all bad" if top == "all_bad" else f"reply {str(top).upper()} first"
            found.append(
                (item_id, f"{agreeing} of {len(given)} answers agree with the crowd ({choice})")
            )
    return found


def review_filters(*, user: User) -> QuerySet[SavedReviewFilter]:
    return SavedReviewFilter.objects.filter(user=user)


def rejected_keys() -> set[str]:
    return set(
        ReviewItem.objects.filter(status=ReviewStatus.REJECTED).values_list("source_key", flat=True)
    )


def edits_by_key() -> dict[str, list[dict[str, str]]]:
    """Every source's curator edits, by source key (what a dataset applies as it reads)."""
    return dict(ReviewItem.objects.exclude(edits=[]).values_list("source_key", "edits"))
