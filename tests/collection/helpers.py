"""Quest items and votes for collection tests, made through the collection's own services."""

from __future__ import annotations

from typing import Any

from collection import services
from collection.models import Assignment, QuestItem

REPLIES = [{"key": "a", "text": "Paris is the capital."}, {"key": "b", "text": "Lyon, I think."}]


def make_item(type: str = "rank", **kwargs: Any) -> QuestItem:
    defaults: dict[str, Any] = {"prompt": "What is the capital of France?"}
    if type in ("rank", "image"):
        defaults["replies"] = REPLIES
    elif type in ("label", "review"):
        defaults["replies"] = REPLIES[:1]
    item = services.quest_item_create(type=type, **(defaults | kwargs))
    assert item is not None
    return item


def claim(user: Any, quest_type: str | None = None) -> Assignment:
    assignment = services.assignment_claim(user_id=user.pk, quest_type=quest_type)
    assert assignment is not None
    return assignment


def answer_for(
    type: str, *, first: str = "a", text: str = "The capital is Paris."
) -> dict[str, Any]:
    if type in ("rank", "image"):
        return {f"rank_{first}": "1", f"rank_{'b' if first == 'a' else 'a'}": "2"}
    if type == "label":
        return {"labels": ["helpful"], "rating": "4"}
    if type == "reference":
        return {"text": text}
    return {"verdict": "accept"}
