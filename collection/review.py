"""The curators' review queue: arena battles someone reported or whose answers leaked a model's
identity wait here; a curator approves or rejects each (with a note), every decision kept. A
rejected battle is left out of every later dataset version."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from arena import selectors as arena_selectors
from collection.models import ReviewAction, ReviewItem, ReviewKind, ReviewStatus


class ReviewError(Exception):
    """A decision that cannot be taken (the message is shown to the curator)."""


def review_queue_sync() -> int:
    """Add the battles the arena marked (reports, leaks) that the queue does not hold yet;
    idempotent. Returns how many were added."""
    items = [
        ReviewItem(
            source_key=f"battle:{row['battle_id']}",
            kind=ReviewKind.REPORT if row["flagged"] else ReviewKind.LEAK,
            reason=row["flag_reason"] if row["flagged"] else "a reply named a model",
        )
        for row in arena_selectors.battles_for_review()
    ]
    before = ReviewItem.objects.count()
    ReviewItem.objects.bulk_create(items, ignore_conflicts=True)  # returns the conflicting too
    return ReviewItem.objects.count() - before


def review_decide(*, item_id: int, user: User, status: str, note: str = "") -> ReviewItem:
    """Approve or reject one item (a later decision may overturn an earlier one)."""
    if status not in (ReviewStatus.APPROVED, ReviewStatus.REJECTED):
        raise ReviewError("Approve or reject.")
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().filter(id=item_id).first()
        if item is None:
            raise ReviewError("No such item.")
        item.status = status
        item.save(update_fields=["status"])
        ReviewAction.objects.create(item=item, status=status, user=user, note=note.strip()[:200])
    return item


def review_pending() -> QuerySet[ReviewItem]:
    return ReviewItem.objects.filter(status=ReviewStatus.PENDING)


def review_decided(*, limit: int = 50) -> list[ReviewItem]:
    decided = ReviewItem.objects.exclude(status=ReviewStatus.PENDING).prefetch_related("actions")
    return list(decided.order_by("-id")[:limit])


def rejected_keys() -> set[str]:
    return set(
        ReviewItem.objects.filter(status=ReviewStatus.REJECTED).values_list("source_key", flat=True)
    )
