"""Receivers of other apps' signals (connected in CollectionConfig.ready)."""

from __future__ import annotations

from typing import Any


def quests_from_vote_enqueue(sender: Any, vote_id: int, **kwargs: Any) -> None:
    """arena vote_cast: spawn the vote's quests on a worker, off the vote's request."""
    from collection.tasks import quests_from_vote

    quests_from_vote.delay(vote_id)


def datasets_revoke_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    """auth User pre_delete: take the account's battles out of every dataset."""
    from collection.datasets import contributor_revoke

    contributor_revoke(user_id=instance.pk)
