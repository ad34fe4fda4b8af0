"""Receivers of other apps' signals (connected in CollectionConfig.ready)."""

from __future__ import annotations

from typing import Any


def quests_from_vote_enqueue(
    sender: Any, vote_id: int, choice: str, turn_index: int, **kwargs: Any
) -> None:
    """arena vote_cast: spawn the vote's quests on a worker, off the vote's request. Only a vote
    that can spawn one costs a task: "both bad", a tie, a verdict on a later turn, which may
    disagree with an earlier vote of its battle, or any vote on a tools battle, whose tool calls
    become tool-use quests (collection.services.quests_from_vote). Most votes are a first
    turn's verdict on a plain battle and spawn nothing."""
    from collection.tasks import quests_from_vote

    if choice in ("a", "b") and turn_index == 1 and not kwargs.get("tools"):
        return
    quests_from_vote.delay(vote_id)


def datasets_revoke_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    """auth User pre_delete: take the account's battles out of every dataset."""
    from collection.datasets import contributor_revoke

    contributor_revoke(user_id=instance.pk)
